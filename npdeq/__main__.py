"""``python -m npdeq``: the same as the ``npdeq`` command."""

import sys

from npdeq.cli import main

sys.exit(main())
