"""``python -m sim``: the same as ``carlinkd-sim``."""

import sys

from sim.cli import main

sys.exit(main())
