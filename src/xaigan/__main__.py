"""``python -m xaigan`` is the ``xaigan`` command."""

import sys

try:
    from xaigan.cli import main
except KeyboardInterrupt:  # Ctrl-C while importing: nothing started yet
    sys.exit(130)

sys.exit(main())
