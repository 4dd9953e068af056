"""Entry point for the benchmarks: ``python benchmarks/run.py [--quick] [--libs wskit,...]``.

Today there is one benchmark, :mod:`echo` (wskit against websockets, aiohttp and picows), and
this runs it with the same options; ``python benchmarks/echo.py --help`` lists them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory is on sys.path; run as ``python -m benchmarks.run`` from
# the repository root, the package is.
try:
    from benchmarks import echo
except ImportError:  # pragma: no cover - depends on how the file is started
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import echo  # type: ignore[import-not-found, no-redef]


def main() -> int:
    return echo.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
