#!/usr/bin/env bash
# Build native_preproc, native_dcsig (and native_jpeg) with AddressSanitizer +
# UndefinedBehaviorSanitizer and run tests/test_resize.py, tests/test_dcsig.py
# and tests/test_native_jpeg.py against that build; then native_dcsig (and
# native_jpeg) with ThreadSanitizer and their tests again. Exits non-zero on
# any test failure or sanitizer report.
#
#   bash native_preproc/sanitize.sh [pytest args...]
#
# PYTHON (default: python) must have pip, numpy, pillow and pytest; the
# build uses setuptools from that environment when present, else pip's
# build isolation (needs PyPI). gcc builds it: the preloaded libasan must
# come from the same compiler.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PYTHON=${PYTHON:-python}
export CC=gcc

WORK=$(mktemp -d "${TMPDIR:-/tmp}/native_preproc_san.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Build from a copy: an in-tree build would leave an instrumented module in
# native_preproc/build/ for the next ordinary install to pick up.
mkdir -p "$WORK/src" "$WORK/site"
cp "$HERE"/native_preproc.c "$HERE"/native_preproc.pyi "$HERE"/native_jpeg.c "$HERE"/native_jpeg.pyi \
   "$HERE"/native_dcsig.c "$HERE"/native_dcsig.pyi \
   "$HERE"/setup.py "$HERE"/pyproject.toml "$WORK/src/"

# Offline when the environment can build wheels itself (setuptools >= 61
# and bdist_wheel); otherwise pip fetches the build backend.
isolation=()
if "$PYTHON" - 2>/dev/null <<'PY'
import importlib.util as u
import setuptools
major = int(setuptools.__version__.split(".")[0])
wheel = u.find_spec("wheel") or u.find_spec("setuptools.command.bdist_wheel")
raise SystemExit(0 if major >= 61 and wheel else 1)
PY
then
    isolation=(--no-build-isolation)
fi
echo "sanitize.sh: building native_preproc with ASan+UBSan in $WORK" >&2
# float-cast-overflow is not part of "undefined" in gcc, and Python's own
# -fwrapv would hide signed overflow: both are switched back on.
NATIVE_PREPROC_CFLAGS="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-wrapv -fno-omit-frame-pointer -g" \
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    "${isolation[@]}" --target "$WORK/site" "$WORK/src"

so=$(ls "$WORK"/site/native_preproc*.so)
libs=$(ldd "$so")  # not piped into grep -q: pipefail + SIGPIPE would misfire
if ! grep -q libasan <<<"$libs"; then
    echo "sanitize.sh: error: $so is not linked against libasan" >&2
    exit 1
fi
LIBASAN=$(gcc -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "sanitize.sh: error: gcc has no libasan.so ($LIBASAN)" >&2
    exit 1
fi

# CPython leaks by design, hence detect_leaks=0. Every report is fatal, and
# goes to stderr, which pytest must not capture (--capture=sys): the process
# dies at the report and a captured message would die with it.
export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
# The C path must be the one under test: no fallback, no skipping.
export PYAI_REQUIRE_NATIVE=1
unset PYAI_NO_NATIVE
# native_jpeg is tested where it was built (libjpeg-turbo headers present).
jpeg_tests=()
if ls "$WORK"/site/native_jpeg*.so >/dev/null 2>&1; then
    export PYAI_REQUIRE_NATIVE_JPEG=1
    jpeg_tests=(tests/test_native_jpeg.py)
else
    echo "sanitize.sh: native_jpeg was not built (no libjpeg-turbo headers): testing the resize only" >&2
fi

cd "$REPO"
# test_dcsig.py skips when native_dcsig does not import: it must, from here.
"$PYTHON" - "$WORK/site" <<'PY'
import sys
import native_dcsig
import native_preproc
import pyai.resize as r
for m in (native_preproc, native_dcsig):
    assert m.__file__.startswith(sys.argv[1]), m.__file__
    print(f"sanitize.sh: testing {m.__file__}", file=sys.stderr)
assert r.NATIVE and r.IMPLEMENTATION == "native", r.IMPLEMENTATION
PY

set +e
"$PYTHON" -m pytest tests/test_resize.py tests/test_dcsig.py "${jpeg_tests[@]}" -p no:cacheprovider --capture=sys -q "$@" 2>&1 | tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e

# Belt and braces: a report that somehow did not stop the run still fails it.
if grep -qE 'ERROR: AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$WORK/pytest.log"; then
    echo "sanitize.sh: FAILED: sanitizer report above" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize.sh: FAILED: pytest exited with $status (a sanitizer abort shows above)" >&2
    exit "$status"
fi
echo "sanitize.sh: ASan+UBSan OK, no reports" >&2

# native_jpeg hands one frame's parts to helper threads, native_dcsig the second
# half of a frame's walk to its one: ThreadSanitizer over their tests (in their
# own builds: TSan and ASan do not mix). The classifier test is left out:
# LiteRT's threads are not instrumented. The ASan builds stay off the path
# (pyai resizes with NumPy here); test_dcsig.py's pyai.decode imports
# native_jpeg, which must then be the TSan one too, or none.
LIBTSAN=$(gcc -print-file-name=libtsan.so)
if [ ! -e "$LIBTSAN" ]; then
    echo "sanitize.sh: error: gcc has no libtsan.so ($LIBTSAN)" >&2
    exit 1
fi
mkdir -p "$WORK/tsan"
PYINC=$("$PYTHON" -c 'import sysconfig; print("-I" + sysconfig.get_paths()["include"])')
EXT_SUFFIX=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ ${#jpeg_tests[@]} -gt 0 ]; then
    echo "sanitize.sh: building native_jpeg with TSan in $WORK/tsan" >&2
    gcc -O1 -g -fsanitize=thread -fno-omit-frame-pointer -fPIC -shared "$PYINC" \
        -o "$WORK/tsan/native_jpeg$EXT_SUFFIX" "$HERE/native_jpeg.c" -ljpeg -lpthread
fi
echo "sanitize.sh: building native_dcsig with TSan in $WORK/tsan" >&2
gcc -O1 -g -fsanitize=thread -fno-omit-frame-pointer -fPIC -shared "$PYINC" \
    -o "$WORK/tsan/native_dcsig$EXT_SUFFIX" "$HERE/native_dcsig.c" -lpthread
LD_PRELOAD="$LIBTSAN" PYTHONPATH="$WORK/tsan" "$PYTHON" - "$WORK/tsan" <<'PY'
import importlib.util as u
import sys
import native_dcsig
assert native_dcsig.__file__.startswith(sys.argv[1]), native_dcsig.__file__
jpeg = u.find_spec("native_jpeg")
assert jpeg is None or jpeg.origin.startswith(sys.argv[1]), jpeg.origin
print(f"sanitize.sh: testing {native_dcsig.__file__} (TSan)", file=sys.stderr)
PY
set +e
LD_PRELOAD="$LIBTSAN" TSAN_OPTIONS="halt_on_error=1:exitcode=66" PYTHONPATH="$WORK/tsan" \
    "$PYTHON" -m pytest "${jpeg_tests[@]}" tests/test_dcsig.py -k "not classifier" -p no:cacheprovider --capture=sys -q \
    2>&1 | tee "$WORK/tsan.log"
status=${PIPESTATUS[0]}
set -e
if grep -q 'ThreadSanitizer' "$WORK/tsan.log" || [ "$status" -ne 0 ]; then
    echo "sanitize.sh: FAILED: ThreadSanitizer report or test failure above (status $status)" >&2
    exit 1
fi
echo "sanitize.sh: TSan OK, no reports" >&2
echo "sanitize.sh: OK, no sanitizer reports" >&2
