"""`python -m steer` is the `steer` command."""

import sys

from steer.tools.cli import main

sys.exit(main())
