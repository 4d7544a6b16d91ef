"""``python -m carlink_cloud ...`` = ``carlink-cloud ...`` (used by the tests' subprocesses)."""

import sys

from carlink_cloud.cli import main

sys.exit(main())
