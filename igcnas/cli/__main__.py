"""``python -m igcnas.cli``: the same as the ``igc-nas`` command."""

import sys

from igcnas.cli import main

sys.exit(main())
