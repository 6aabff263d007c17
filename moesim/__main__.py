"""`python -m moesim`: the same as the `moesim` console script."""

import sys

from moesim.cli import main

sys.exit(main())
