"""``python -m sim.cloud ...`` = ``carlinkd cloud ...`` (used by the tests' subprocesses)."""

import sys

from carlinkd.sync.cli import main

sys.exit(main(sys.argv[1:]))
