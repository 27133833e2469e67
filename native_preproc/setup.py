"""Build script for the ``native_preproc`` extension module.

Compile flags: ``-O3`` only, nothing CPU-specific, so the same source builds
for any x86-64 and for aarch64 (where gcc auto-vectorises to NEON).  Extra
flags come from ``NATIVE_PREPROC_CFLAGS`` (compile and link, e.g. sanitizers)
and ``NATIVE_PREPROC_LDFLAGS`` (link only).
"""

import os
import shlex
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
STUB = "native_preproc.pyi"

extra_cflags = shlex.split(os.environ.get("NATIVE_PREPROC_CFLAGS", ""))
extra_ldflags = shlex.split(os.environ.get("NATIVE_PREPROC_LDFLAGS", ""))


class build_ext_with_stub(build_ext):
    """Always rebuild, and place the type stub next to the built module.

    A single-module distribution has no package to carry package data, so
    the stub is copied into the build tree by hand and lands in
    site-packages beside the shared object.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        # setuptools skips an extension whose output looks newer than its
        # sources, even when NATIVE_PREPROC_CFLAGS changed (e.g. a sanitizer
        # build left in build/); one C file is cheap to always recompile.
        self.force = True

    def run(self) -> None:
        super().run()
        if not self.inplace:
            self.copy_file(str(HERE / STUB), os.path.join(self.build_lib, STUB))


class sdist_with_stub(sdist):
    """Ship the stub in the sdist too, so wheels built from it have it."""

    def make_distribution(self) -> None:
        # The file list comes from egg_info, which only knows the sources.
        if STUB not in self.filelist.files:
            self.filelist.append(STUB)
        super().make_distribution()


setup(
    ext_modules=[
        Extension(
            "native_preproc",
            sources=["native_preproc.c"],
            # Appended after Python's own CFLAGS, so -O3 wins over theirs;
            # the env flags come last so a sanitizer build may override.
            extra_compile_args=["-O3", *extra_cflags],
            extra_link_args=[*extra_cflags, *extra_ldflags],
        )
    ],
    # Nothing but the extension: also stops setuptools' auto-discovery.
    packages=[],
    py_modules=[],
    cmdclass={"build_ext": build_ext_with_stub, "sdist": sdist_with_stub},
)
