"""``python -m midizero_app.cli``: the ``midizero`` command."""
import sys

from . import main

sys.exit(main())
