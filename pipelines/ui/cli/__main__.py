"""``python -m sluice.ui.cli ARGS``: the ``sluice`` command, as the console script runs it."""
import sys

from sluice.ui.cli import main

if __name__ == '__main__':  # importing this module (as a check of every module does) runs nothing
    sys.exit(main())
