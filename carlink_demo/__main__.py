"""``python -m carlink_demo`` = ``carlink-demo``."""

import sys

from carlink_demo.cli import main

sys.exit(main())
