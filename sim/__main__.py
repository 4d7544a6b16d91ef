"""``python -m carlink_sim``: the same as ``carlinkd-sim``."""

import sys

from carlink_sim.cli import main

sys.exit(main())
