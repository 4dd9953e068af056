"""Entry point for the benchmarks: ``python benchmarks/run.py [BENCHMARK] [options]``.

``BENCHMARK`` is one of

* ``echo`` (the default): uncompressed echo, wskit against websockets, aiohttp and picows;
* ``compression``: permessage-deflate echo of JSON text, wskit against websockets and aiohttp;
* ``handshake``: server CPU per connection (open, handshake, close), one load generator;

and the options are that benchmark's own (``python benchmarks/run.py compression --help``).
Without a benchmark name, every option goes to ``echo``, as before there were several.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as a script, Python puts ``benchmarks/`` first on sys.path; the repository root goes there
# instead, so that the benchmarks are imported as the ``benchmarks`` package (and
# ``compression.py`` cannot shadow the standard library's ``compression`` package of 3.14).
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = _ROOT
elif _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import compression, echo, handshake  # noqa: E402

BENCHMARKS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "echo": echo.main,
    "compression": compression.main,
    "handshake": handshake.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in BENCHMARKS:
        return BENCHMARKS[args[0]](args[1:])
    return echo.main(args)


if __name__ == "__main__":
    sys.exit(main())
