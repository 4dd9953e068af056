"""Build the optional compiled hot path; everything else is in pyproject.toml.

Two kinds of extension, both optional (where no compiler is found, or a build fails,
setuptools skips it and wskit runs the pure-Python code instead):

- ``wskit.core._speedups``: a small C module (masking, the one-copy message buffer);
- ``wskit.core.connection``, ``.frames`` and ``.events``: the core's own ``.py`` sources,
  compiled by Cython in pure-Python mode with the C types of the ``.pxd`` beside each; and
  ``wskit.asyncio._hotpath``, the asyncio front end's per-message path, the same way. The
  ``.py`` stays the one source of truth; without Cython it simply runs as Python.

``WSKIT_NO_EXTENSIONS=1`` at build time builds neither; at run time it makes wskit load the
``.py`` sources even where the compiled modules exist (``wskit/_purepath.py``), so one build
can be tested both ways. ``wskit.core.IMPLEMENTATION`` says which runs.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

#: The modules Cython compiles (kept in step with wskit/_purepath.py and the .pxd files).
CYTHON_MODULES = (
    "wskit.core.connection",
    "wskit.core.frames",
    "wskit.core.events",
    "wskit.asyncio._hotpath",
)

extensions: list[Extension] = []
if not os.environ.get("WSKIT_NO_EXTENSIONS"):
    optimize = ["-O3"] if os.name == "posix" else []
    extensions.append(
        Extension(
            "wskit.core._speedups",
            ["src/wskit/core/_speedups.c"],
            extra_compile_args=optimize,
            optional=True,
        )
    )
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython in the build environment: it all stays pure Python
        pass
    else:
        compiled = cythonize(
            [
                Extension(
                    name,
                    ["src/" + name.replace(".", "/") + ".py"],
                    extra_compile_args=optimize,
                    optional=True,
                )
                for name in CYTHON_MODULES
            ],
            compiler_directives={
                "language_level": 3,
                # The .py annotations are Python types (an ``int`` may be any size); the C
                # types come from the .pxd files only.
                "annotation_typing": False,
            },
            quiet=True,
        )
        for extension in compiled:
            extension.optional = True  # cythonize() does not carry it over
        extensions += compiled

setup(ext_modules=extensions)
