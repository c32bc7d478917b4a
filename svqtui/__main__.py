"""``python -m svqtui``: the same as the ``svqtui`` console script."""

import sys

from svqtui.cli import main

sys.exit(main())
