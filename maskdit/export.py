"""``python -m maskdit.export``: the ``export`` command (maskdit.app.commands.export)."""

import sys

from maskdit.app.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
