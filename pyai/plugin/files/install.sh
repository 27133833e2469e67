#!/bin/sh
# eKuiper runs this once, as `/bin/sh install.sh [shellParas...]`, in the plugin
# folder, with its own environment. It must install into the interpreter eKuiper
# will start the plugin with (`portable.pythonBin`), which eKuiper does not tell
# us. In order, the first that is set wins:
#   1. shellParas `["--python", "/path/to/python"]` in the install request;
#   2. PYAI_PYTHON in eKuiper's environment;
#   3. KUIPER__PORTABLE__PYTHONBIN in eKuiper's environment (eKuiper's own override);
#   4. portable.pythonBin in eKuiper's etc/kuiper.yaml ($KuiperBaseKey/etc, the
#      folder three levels above this one, or /etc/kuiper);
#   5. python (eKuiper's default), else python3.
set -u

PY=""
FROM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) [ $# -ge 2 ] || { echo "pyai: --python needs a path" >&2; exit 2; }; PY="$2"; FROM="shellParas"; shift 2 ;;
    --python=*) PY="${1#--python=}"; FROM="shellParas"; shift ;;
    *) echo "pyai: unknown install parameter '$1' (expected --python <interpreter>)" >&2; exit 2 ;;
  esac
done

# The value of portable.pythonBin in a kuiper.yaml: the first `pythonBin:` key in
# the top-level `portable:` block, quotes and comments removed.
yaml_python_bin() {
  awk '
    /^[^ \t#]/ { in_portable = ($0 ~ /^portable:[ \t]*(#.*)?$/) ; next }
    in_portable && /^[ \t]+pythonBin:/ {
      v = $0; sub(/^[ \t]+pythonBin:[ \t]*/, "", v); sub(/[ \t]+#.*$/, "", v)
      gsub(/^["'\'']|["'\'']$/, "", v); print v; exit
    }' "$1" 2>/dev/null
}

if [ -z "$PY" ] && [ -n "${PYAI_PYTHON:-}" ]; then PY="$PYAI_PYTHON"; FROM="PYAI_PYTHON"; fi
if [ -z "$PY" ] && [ -n "${KUIPER__PORTABLE__PYTHONBIN:-}" ]; then
  PY="$KUIPER__PORTABLE__PYTHONBIN"; FROM="KUIPER__PORTABLE__PYTHONBIN"
fi
if [ -z "$PY" ]; then
  here=$(pwd)
  for yaml in "${KuiperBaseKey:+$KuiperBaseKey/etc/kuiper.yaml}" "$here/../../../etc/kuiper.yaml" /etc/kuiper/kuiper.yaml; do
    [ -n "$yaml" ] && [ -f "$yaml" ] || continue
    v=$(yaml_python_bin "$yaml")
    if [ -n "$v" ]; then PY="$v"; FROM="$yaml"; fi
    break
  done
fi
if [ -z "$PY" ]; then PY=python; FROM="eKuiper's default"; fi
if ! command -v "$PY" >/dev/null 2>&1 && [ ! -x "$PY" ]; then
  if [ "$PY" = python ] && command -v python3 >/dev/null 2>&1; then
    echo "pyai: warning: eKuiper starts plugins with 'python', which is not on PATH here; installing into python3." >&2
    echo "pyai: set portable.pythonBin in etc/kuiper.yaml (e.g. to python3 or a venv's python), or the plugin will not start." >&2
    PY=python3
  else
    echo "pyai: the interpreter '$PY' (from $FROM) does not exist" >&2
    exit 1
  fi
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  echo "pyai: '$PY' (from $FROM) is missing or older than Python 3.9" >&2
  exit 1
fi
echo "pyai: installing into $("$PY" -c 'import sys; print(sys.executable)') (pythonBin from $FROM)"

pip_install() {
  out=$("$PY" -m pip install --disable-pip-version-check --no-input "$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q externally-managed-environment; then
    # Debian/Raspberry Pi OS system Python (PEP 668). A venv set as eKuiper's
    # pythonBin is the clean way; this keeps the tutorial's one-step install working.
    echo "pyai: system Python is externally managed; retrying with --break-system-packages"
    out=$("$PY" -m pip install --disable-pip-version-check --no-input --break-system-packages "$@" 2>&1)
    rc=$?
  fi
  printf '%s\n' "$out" | tail -n 3
  return $rc
}

if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "pyai: '$PY' has no pip (python3 -m venv makes a venv with pip; Debian: apt install python3-pip)" >&2
  exit 1
fi
# Exact versions, each file checked against its sha256 in requirements.txt, wheels
# only: the packages that were tested, or a failed install (never a different one).
if ! pip_install --require-hashes --only-binary :all: -r requirements.txt; then
  echo "pyai: installing requirements.txt failed (it pins wheels for Python 3.9-3.13 on x86_64 and aarch64 Linux, with hashes)" >&2
  exit 1
fi

# The C resize is optional: without a compiler the NumPy path gives the same answers.
# Built with the pinned setuptools just installed: nothing fetched unpinned.
if [ "${PYAI_NO_NATIVE:-0}" != "1" ] && pip_install --no-build-isolation --no-deps --no-index ./native_preproc; then
  echo "pyai: native_preproc built"
  # Built beside it only where libjpeg-turbo's headers are installed.
  if "$PY" -c 'import native_jpeg' 2>/dev/null; then
    echo "pyai: native_jpeg built (a JPEG frame is decoded on several cores)"
  else
    echo "pyai: native_jpeg not built (no libjpeg-turbo headers; e.g. apt install libjpeg62-turbo-dev, then reinstall); JPEG frames decode on one core with simplejpeg"
  fi
  if "$PY" -c 'import native_dcsig' 2>/dev/null; then
    echo "pyai: native_dcsig built (skip_unchanged reads a JPEG frame's signature without decoding it)"
  fi
else
  echo "pyai: native_preproc not built; using the NumPy resize (same results, slower)"
fi

# Fail the install now, with a readable reason, rather than at the first rule.
if ! "$PY" -c 'import sys; sys.path.insert(0, "."); import pyai.plugin.main, pyai.resize as r; print("pyai: ready, resize =", r.IMPLEMENTATION)'; then
  echo "pyai: the installed plugin does not import" >&2
  exit 1
fi
exit 0
