"""`python -m unet ...`: the command line (see unet.cli)."""

import sys

from unet.cli import main

sys.exit(main())
