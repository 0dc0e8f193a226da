"""``python -m maskdit.evaluate``: the ``evaluate`` command (maskdit.app.commands.evaluate)."""

import sys

from maskdit.app.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
