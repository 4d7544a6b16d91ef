"""Voice evaluation that cannot be tuned to: many synthesizers and voices, split by voice into a
written-down tuning list and a held-out list (voices.yaml), rendered on demand and cached."""
