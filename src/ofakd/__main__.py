"""``python -m ofakd`` (and ``torchrun -m ofakd``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
