"""Run the emulator standalone: ``python -m enkrypt_async.testing --port 8080``."""

import sys

from ._serve import main

if __name__ == "__main__":
    sys.exit(main())
