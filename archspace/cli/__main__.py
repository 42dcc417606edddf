"""``python -m archspace.cli``: the ``archspace`` command."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
