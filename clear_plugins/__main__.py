"""``python -m clear_plugins``: the same command line as the ``clear-plugins`` console script."""

import sys

from clear_plugins.cli import main

sys.exit(main())
