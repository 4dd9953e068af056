"""Build the optional compiled hot path; everything else is in pyproject.toml.

``wskit.core._speedups`` (C, standard library only) is optional: where no compiler is found, or
the build fails, setuptools skips it and wskit runs its pure-Python implementation. Setting
``WSKIT_NO_EXTENSIONS=1`` at build time skips it on purpose.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

extensions = []
if not os.environ.get("WSKIT_NO_EXTENSIONS"):
    extensions.append(
        Extension(
            "wskit.core._speedups",
            ["src/wskit/core/_speedups.c"],
            extra_compile_args=["-O3"] if os.name == "posix" else [],
            optional=True,
        )
    )

setup(ext_modules=extensions)
