"""``python -m wskit``: see :mod:`wskit.cli`."""

from __future__ import annotations

import sys

from wskit.cli import main

if __name__ == "__main__":
    sys.exit(main())
