"""``python -m nphmkit`` (and ``torchrun -m nphmkit``) runs the command line."""

import sys

from nphmkit.cli import main

sys.exit(main())
