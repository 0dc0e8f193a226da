"""``python -m maskdit.ema``: the ``ema`` command (maskdit.app.commands.ema)."""

import sys

from maskdit.app.commands.ema import main

if __name__ == "__main__":
    sys.exit(main())
