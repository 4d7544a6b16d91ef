"""carlinkd.voice: placeholder until its issue lands."""
