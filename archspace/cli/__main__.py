"""``python -m archspace.cli``: the ``archspace`` command."""
import sys

from . import main

sys.exit(main())
