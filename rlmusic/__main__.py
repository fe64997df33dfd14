"""``python -m rlmusic ...``: the same as the ``rlmusic`` command."""

import sys

from rlmusic.cli.main import main

sys.exit(main())
