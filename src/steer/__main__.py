"""`python -m steer` is the `steer` command."""

import sys

from steer.cli import main

sys.exit(main())
