"""Declares the compiled extensions; everything else lives in pyproject.toml.

Every ``csrc/NAME.pyx`` becomes the module ``npspeech._ext.NAME``. A file that needs C++
says so in its first lines with ``# distutils: language = c++``.
"""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

extensions = [
    Extension(
        f"npspeech._ext.{source.stem}",
        [str(source)],
        include_dirs=[numpy.get_include(), "csrc"],
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
            # the oldest NumPy the package supports: its C API up to 1.22 (NEP 49's
            # memory handlers, which array_pool uses) is available
            ("NPY_TARGET_VERSION", "NPY_1_22_API_VERSION"),
        ],
        extra_compile_args=["-O3"],
    )
    for source in sorted(Path("csrc").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=COMPILER_DIRECTIVES))
