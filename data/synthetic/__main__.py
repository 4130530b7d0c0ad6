"""``python -m data.synthetic DATASET --out DIR ...`` (see :mod:`data.synthetic`)."""

import sys

from data.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
