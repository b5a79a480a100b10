"""Declares the Cython extensions; metadata lives in pyproject.toml.

Environment switches
--------------------
ITS_CORE_DEBUG=1
    Build with Cython bounds checks, wraparound checks and initialised-variable
    checks turned back on, so that an out-of-buffer index raises instead of
    corrupting memory.  CI runs the whole test suite once against such a build.
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ITS_CORE_DEBUG", "") not in ("", "0")

# Set once, build-wide.  Guest input is validated at the Python boundary (or
# explicitly in the command decoder) before it reaches these modules.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

MODULES = ["_layouts", "_events", "_core", "_ceiling", "_guest", "_lpi", "_cmdq", "_abi"]

extensions = [
    Extension(
        f"its_core.{name}",
        [f"its_core/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("ITS_CORE_DEBUG", "1" if DEBUG else "0")],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        # Debug and release C files are kept apart, so neither build can pick
        # up the other's generated code.
        build_dir="build/cython-debug" if DEBUG else "build/cython",
    ),
)
