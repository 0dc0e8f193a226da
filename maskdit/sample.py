"""``python -m maskdit.sample``: the ``sample`` command (maskdit.app.commands.sample)."""

import sys

from maskdit.app.commands.sample import main

if __name__ == "__main__":
    sys.exit(main())
