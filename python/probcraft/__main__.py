"""``python -m probcraft``: the same as the ``probcraft`` console script."""

import sys

from .cli import main

sys.exit(main())
