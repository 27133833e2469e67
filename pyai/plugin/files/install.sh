#!/bin/sh
# eKuiper runs this once, as `/bin/sh install.sh`, in the plugin folder.
# It installs into the same interpreter eKuiper starts the plugin with
# (eKuiper's `pythonBin`, default `python`); PYAI_PYTHON overrides that.
set -u

PY="${PYAI_PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  echo "pyai: '$PY' is missing or older than Python 3.9" >&2
  exit 1
fi
echo "pyai: installing into $("$PY" -c 'import sys; print(sys.executable)')"

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

if ! pip_install -r requirements.txt; then
  echo "pyai: installing requirements.txt failed" >&2
  exit 1
fi

# The C resize is optional: without a compiler the NumPy path gives the same answers.
if [ "${PYAI_NO_NATIVE:-0}" != "1" ] && pip_install ./native_preproc; then
  echo "pyai: native_preproc built"
  # Built beside it only where libjpeg-turbo's headers are installed.
  if "$PY" -c 'import native_jpeg' 2>/dev/null; then
    echo "pyai: native_jpeg built (a JPEG frame is decoded on several cores)"
  else
    echo "pyai: native_jpeg not built (no libjpeg-turbo headers; e.g. apt install libjpeg62-turbo-dev, then reinstall); JPEG frames decode on one core with simplejpeg"
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
