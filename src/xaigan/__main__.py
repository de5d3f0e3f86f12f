"""``python -m xaigan`` is the ``xaigan`` command."""

import sys

from xaigan.cli import main

sys.exit(main())
