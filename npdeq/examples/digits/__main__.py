"""``python -m npdeq.examples.digits``: the same as ``npdeq demo``."""

import sys

from npdeq.examples.digits import main

sys.exit(main())
