"""``python -m maskdit.fid``: the ``fid`` command (maskdit.app.commands.fid)."""

import sys

from maskdit.app.commands.fid import main

if __name__ == "__main__":
    sys.exit(main())
