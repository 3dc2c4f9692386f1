"""``python -m jitagent.cli``: the ``jitagent`` command without its script."""

import sys

from jitagent.cli import main

sys.exit(main())
