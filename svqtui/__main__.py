"""``python -m svqtui``: the same as the ``svqtui`` console script."""

import sys

if "--takeover" in sys.argv:  # a successor: start up without taking CPU from guests
    from svqtui.thread_priority import quiet_start, start_nice_from_env

    quiet_start(start_nice_from_env())

from svqtui.cli import main

sys.exit(main())
