"""The two plugins of ``bench/ekuiper/ekuiper_bench.py``, as zips eKuiper installs over REST.

- ``pyai``: ``dist/pyai.zip`` as ``python -m pyai.plugin.package`` builds it.
- ``tutorial``: eKuiper's Python TFLite tutorial plugin (``bench/protocol/plugins/baseline/``,
  its label.py and label_func.py unchanged) packed at run time as plugin
  ``tutorial`` with function ``tutorialLabelImage``. Function symbols are global
  in eKuiper (one function object, and one IPC path ``/tmp/func_<symbol>.ipc``,
  per name), so it cannot be called ``labelImage`` next to pyai in one kuiperd.
  Its install.sh pip-installs the SDK (``ekuiper``, which pins ``pynng``),
  Pillow and ``ai-edge-litert`` into the interpreter named by
  ``shellParas: ["--python", ...]`` (the tutorial's ``tflite_runtime`` does not
  import under NumPy 2: see bench/README.md).
- ``ceiling``: the host's ceiling, function ``constLabelImage``: pyai's own transport
  (``pyai/plugin/runtime.py`` and ``sp.py``, shipped as package ``rt``) answering
  a realistic top-5 constant without looking at the frame (the protocol bench's
  ``transport`` plugin inside kuiperd). It runs with the pythonBin pyai's
  install.sh filled and needs nothing else, so it has no install.sh.
- ``tutorialtfl``: the same plugin as the tutorial writes it, on ``tflite_runtime``
  (function ``tutorialTfliteLabelImage``). One kuiperd has one ``pythonBin``, and
  ``tflite_runtime`` needs NumPy 1.x, so its install.sh makes a venv of its own in
  the plugin folder (``ekuiper tflite-runtime "numpy<2" pillow``, what the
  tutorial's ``pip install pynng ekuiper tflite_runtime`` gives), and its entry
  point re-executes itself with that venv's interpreter: the same process, as for a
  user whose pythonBin has the tutorial's packages.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path
from typing import Dict

import json

from bench.common.benchlib import CONSTANT_RESULT, DEFAULT_MODEL, LABELS, MODELS, PLUGINS, REPO

TUTORIAL = "tutorial"
TUTORIAL_SYMBOL = "tutorialLabelImage"
TUTORIAL_TFL = "tutorialtfl"
TUTORIAL_TFL_SYMBOL = "tutorialTfliteLabelImage"
CEILING = "ceiling"
CEILING_SYMBOL = "constLabelImage"
EPOCH = (2024, 1, 1, 0, 0, 0)

def _tutorial_main(plugin_name: str, symbol: str, prelude: str) -> str:
    """The tutorial's entry point (bench/protocol/plugins/baseline/baseline.py) with this bench's
    plugin and symbol names, after ``prelude`` (which picks the model, and the runtime)."""
    return f'''"""eKuiper's Python TFLite tutorial plugin, as plugin `{plugin_name}`, function `{symbol}`."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
{prelude}
from ekuiper import PluginConfig, plugin  # noqa: E402

from label_func import labelIns  # noqa: E402

if __name__ == "__main__":
    c = PluginConfig("{plugin_name}", {{}}, {{}}, {{"{symbol}": lambda: labelIns}})
    plugin.start(c)
'''


def _manifest(symbol: str, executable: str = "tutorial.py") -> str:
    return ('{"version": "v1.0.0", "language": "python", "executable": "' + executable + '", '
            f'"sources": [], "sinks": [], "functions": ["{symbol}"]}}\n')


# Both load the model pyai ships, under its own name (label.py reads PYAI_BENCH_MODEL).
TUTORIAL_MAIN = _tutorial_main(TUTORIAL, TUTORIAL_SYMBOL, f'''
os.environ.setdefault("PYAI_BENCH_MODEL", os.path.join(HERE, "{DEFAULT_MODEL}"))
''')
TUTORIAL_MANIFEST = _manifest(TUTORIAL_SYMBOL)

# The tutorial asks for `pip install pynng ekuiper tflite_runtime`; ekuiper pins
# its pynng, and LiteRT replaces tflite_runtime (bench/protocol/plugins/baseline/label.py).
TUTORIAL_INSTALL = """#!/bin/sh
set -eu
PY=python
if [ "${1:-}" = "--python" ]; then PY="$2"; fi
echo "tutorial: installing into $PY"
"$PY" -m pip install --disable-pip-version-check --no-input -q ekuiper pillow numpy ai-edge-litert
"$PY" -c "import ekuiper, pynng, PIL, numpy, ai_edge_litert"
"""


# The tutorial as written: its own venv with tflite_runtime + NumPy 1.x, entered by
# re-executing the entry point (the process eKuiper started stays the plugin).
TUTORIAL_TFL_MAIN = _tutorial_main(TUTORIAL_TFL, TUTORIAL_TFL_SYMBOL, f'''
VENV = os.path.join(HERE, "venv")
if os.path.abspath(sys.prefix) != VENV:
    env = dict(os.environ, PYAI_BENCH_RUNTIME="tflite_runtime",
               PYAI_BENCH_MODEL=os.path.join(HERE, "{DEFAULT_MODEL}"))
    py = os.path.join(VENV, "bin", "python")
    os.execve(py, [py, "-u", os.path.abspath(__file__)] + sys.argv[1:], env)
''')
TUTORIAL_TFL_MANIFEST = _manifest(TUTORIAL_TFL_SYMBOL)

TUTORIAL_TFL_INSTALL = """#!/bin/sh
set -eu
PY=python3
if [ "${1:-}" = "--python" ]; then PY="$2"; fi
"$PY" -m venv venv
echo "tutorialtfl: installing into $(pwd)/venv"
venv/bin/python -m pip install --disable-pip-version-check --no-input -q ekuiper tflite-runtime "numpy<2" pillow
venv/bin/python -c "import ekuiper, pynng, PIL, numpy, tflite_runtime.interpreter"
"""


def build_tutorial_zip(out: Path, tflite_runtime: bool = False) -> Path:
    """The tutorial plugin's zip: manifest, entry point, label.py, label_func.py,
    install.sh, the model and the labels (under the names label.py looks for).
    ``tflite_runtime``: the tutorial as written (plugin ``tutorialtfl``)."""
    name = TUTORIAL_TFL if tflite_runtime else TUTORIAL
    files: Dict[str, bytes] = {
        f"{name}.json": (TUTORIAL_TFL_MANIFEST if tflite_runtime else TUTORIAL_MANIFEST).encode(),
        "tutorial.py": (TUTORIAL_TFL_MAIN if tflite_runtime else TUTORIAL_MAIN).encode(),
        "install.sh": (TUTORIAL_TFL_INSTALL if tflite_runtime else TUTORIAL_INSTALL).encode(),
        "label.py": (PLUGINS / "baseline" / "label.py").read_bytes(),
        "label_func.py": (PLUGINS / "baseline" / "label_func.py").read_bytes(),
        DEFAULT_MODEL: (MODELS / DEFAULT_MODEL).read_bytes(),
        "labels.txt": (MODELS / LABELS).read_bytes(),
    }
    return _write_zip(out, files, ("install.sh", "tutorial.py"))


CEILING_MAIN = f'''"""The host's ceiling: plugin `{CEILING}`, function `{CEILING_SYMBOL}`, answering a constant."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from constant import Constant  # noqa: E402
from rt.runtime import PluginRuntime  # noqa: E402

RESULT = {json.dumps(CONSTANT_RESULT)}

if __name__ == "__main__":
    PluginRuntime("{CEILING}", {{"{CEILING_SYMBOL}": lambda: Constant(RESULT)}}).run()
'''
# The protocol bench's constant function, shipped beside the entry point.
CONSTANT_FUNCTION = PLUGINS / "transport" / "constant.py"


def _write_zip(out: Path, files: Dict[str, bytes], executables: tuple) -> Path:
    """A plugin zip, each folder's entry before anything inside it (eKuiper v2.4.0
    creates only a file's immediate parent folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    listed = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i]) + "/"
                if folder not in listed:
                    listed.add(folder)
                    info = zipfile.ZipInfo(folder, EPOCH)
                    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                    zf.writestr(info, b"")
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if name in executables else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    return out


def _transport_files() -> Dict[str, bytes]:
    """pyai's transport (pyai/plugin/runtime.py) and every module it imports from its
    own package, followed transitively, as package ``rt``: a module the transport
    starts to import ships without a change here."""
    plugin = REPO / "pyai" / "plugin"
    files: Dict[str, bytes] = {"rt/__init__.py": b""}
    todo = ["runtime"]
    while todo:
        name = todo.pop()
        if f"rt/{name}.py" in files:
            continue
        text = (plugin / f"{name}.py").read_text()
        files[f"rt/{name}.py"] = text.encode()
        todo += re.findall(r"^from \.(\w+) import", text, re.MULTILINE)
    return files


def build_ceiling_zip(out: Path) -> Path:
    """The constant-reply plugin's zip: manifest, entry point, pyai's transport as ``rt``."""
    return _write_zip(out, {
        f"{CEILING}.json": _manifest(CEILING_SYMBOL, "ceiling.py").encode(),
        "ceiling.py": CEILING_MAIN.encode(),
        "constant.py": CONSTANT_FUNCTION.read_bytes(),
        **_transport_files(),
    }, ("ceiling.py",))


def build_pyai_zip(out: Path) -> Path:
    from pyai.plugin import package

    return package.build(out)
