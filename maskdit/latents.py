"""``python -m maskdit.latents``: the ``latents`` command (maskdit.app.commands.latents)."""

import sys

from maskdit.app.commands.latents import main

if __name__ == "__main__":
    sys.exit(main())
