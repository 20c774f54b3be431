"""``python -m vidsnap``: the same as the ``vidsnap`` console script."""

import sys

from vidsnap.local.cli import main

sys.exit(main())
