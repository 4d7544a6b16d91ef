"""carlinkd.sync: placeholder until its issue lands."""
