"""``python -m maskdit.build``: the ``build`` command (maskdit.app.commands.build)."""

import sys

from maskdit.app.commands.build import main

if __name__ == "__main__":
    sys.exit(main())
