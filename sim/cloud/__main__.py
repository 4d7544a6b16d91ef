"""``python -m sim.cloud ...`` = ``carlinkd cloud ...`` (used by the tests' subprocesses)."""

import sys

from carlinkd.cli import main

sys.exit(main(["cloud", *sys.argv[1:]]))
