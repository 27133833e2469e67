"""Build script for the ``native_preproc`` extension module (and ``native_dcsig``, ``native_jpeg``).

Compile flags: ``-O3`` only, nothing CPU-specific, so the same source builds
for any x86-64 and for aarch64 (where gcc auto-vectorises to NEON).  Extra
flags come from ``NATIVE_PREPROC_CFLAGS`` (compile and link, e.g. sanitizers)
and ``NATIVE_PREPROC_LDFLAGS`` (link only).

``native_jpeg`` (one JPEG decoded on several cores) needs libjpeg-turbo's
headers (Debian / Raspberry Pi OS: ``apt install libjpeg62-turbo-dev``). It is
built when they are found and left out otherwise (pyai then decodes with
simplejpeg alone); ``NATIVE_PREPROC_JPEG=1`` makes a missing libjpeg an error,
``=0`` leaves it out.
"""

import os
import shlex
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
STUBS = ("native_preproc.pyi", "native_jpeg.pyi", "native_dcsig.pyi")
JPEG_MODE = os.environ.get("NATIVE_PREPROC_JPEG", "auto").strip().lower()

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

    def build_extensions(self) -> None:
        if JPEG_MODE in ("0", "no", "off", "false") or not self._have_libjpeg():
            if JPEG_MODE in ("1", "yes", "on", "true"):
                raise RuntimeError("NATIVE_PREPROC_JPEG=1 but libjpeg(-turbo) headers or library were not found")
            print("native_preproc: libjpeg-turbo headers not found (or NATIVE_PREPROC_JPEG=0): "
                  "building without native_jpeg")
            self.extensions = [e for e in self.extensions if e.name != "native_jpeg"]
            # A native_jpeg left in build/ by an earlier build must not ship.
            for stale in Path(self.build_lib).glob("native_jpeg*"):
                stale.unlink()
        super().build_extensions()

    def _have_libjpeg(self) -> bool:
        """Compile and link a call of jpeg_skip_scanlines (libjpeg-turbo >= 1.5)."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write("#include <stdio.h>\n#include <jpeglib.h>\n"
                        "int main(void) { struct jpeg_decompress_struct c; "
                        "return (int)jpeg_skip_scanlines(&c, 0); }\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp)
                self.compiler.link_executable(objs, "probe", output_dir=tmp, libraries=["jpeg"])
            except Exception:  # noqa: BLE001 - CompileError/LinkError: not available here
                return False
        return True

    def run(self) -> None:
        super().run()
        if not self.inplace:
            built = {e.name for e in self.extensions}
            for stub in STUBS:
                if Path(stub).stem in built:
                    self.copy_file(str(HERE / stub), os.path.join(self.build_lib, stub))


class sdist_with_stub(sdist):
    """Ship the stub in the sdist too, so wheels built from it have it."""

    def make_distribution(self) -> None:
        # The file list comes from egg_info, which only knows the sources.
        for stub in STUBS:
            if stub not in self.filelist.files:
                self.filelist.append(stub)
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
        ),
        Extension(
            # No libjpeg: it walks the Huffman codes itself.
            "native_dcsig",
            sources=["native_dcsig.c"],
            # No fused multiply-adds: the same cell means to the bit on x86-64
            # and aarch64 (where gcc fuses by default), so the same verdicts.
            extra_compile_args=["-O3", "-ffp-contract=off", *extra_cflags],
            extra_link_args=[*extra_cflags, *extra_ldflags],
        ),
        Extension(
            "native_jpeg",
            sources=["native_jpeg.c"],
            libraries=["jpeg", "pthread"],
            extra_compile_args=["-O3", *extra_cflags],
            extra_link_args=[*extra_cflags, *extra_ldflags],
        ),
    ],
    # Nothing but the extension: also stops setuptools' auto-discovery.
    packages=[],
    py_modules=[],
    cmdclass={"build_ext": build_ext_with_stub, "sdist": sdist_with_stub},
)
