"""``python -m interrogator_core``: see :mod:`interrogator_core.cli`."""
import sys

from .cli import main

sys.exit(main())
