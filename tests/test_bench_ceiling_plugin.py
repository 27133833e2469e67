"""The real-host bench's ceiling plugin (bench/ekuiper/ekuiper_plugins.py) ships pyai's
transport as package ``rt``: every module it imports must be in the zip, or the
plugin dies at its handshake inside kuiperd and the bench has no ceiling."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from bench.ekuiper import ekuiper_plugins


def test_the_ceiling_plugin_imports_from_its_zip_alone(tmp_path: Path) -> None:
    zip_path = ekuiper_plugins.build_ceiling_zip(tmp_path / "ceiling.zip")
    folder = tmp_path / "plugin"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folder)
    # -I: no user site and no PYTHONPATH, so nothing outside the zip's folder is found.
    done = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                           "import rt.runtime, rt.sp, rt.callboard, constant", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The entry point's function answers the constant.
    done = subprocess.run([sys.executable, "-I", "-c", "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
                           "g = runpy.run_path(sys.argv[1] + '/ceiling.py'); "
                           "print(g['Constant'](g['RESULT']).exec([b'frame']) == g['RESULT'])", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
