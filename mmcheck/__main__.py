"""``python -m mmcheck``."""

import sys

from mmcheck.cli import main

sys.exit(main())
