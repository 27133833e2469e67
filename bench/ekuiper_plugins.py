"""The two plugins of ``bench/ekuiper_bench.py``, as zips eKuiper installs over REST.

- ``pyai``: ``dist/pyai.zip`` as ``python -m pyai.plugin.package`` builds it.
- ``tutorial``: eKuiper's Python TFLite tutorial plugin (``bench/plugins/baseline/``,
  its label.py and label_func.py unchanged) packed at run time as plugin
  ``tutorial`` with function ``tutorialLabelImage``. Function symbols are global
  in eKuiper (one function object, and one IPC path ``/tmp/func_<symbol>.ipc``,
  per name), so it cannot be called ``labelImage`` next to pyai in one kuiperd.
  Its install.sh pip-installs the SDK (``ekuiper``, which pins ``pynng``),
  Pillow and ``ai-edge-litert`` into the interpreter named by
  ``shellParas: ["--python", ...]`` (the tutorial's ``tflite_runtime`` does not
  import under NumPy 2: see bench/README.md).
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path
from typing import Dict

from benchlib import DEFAULT_MODEL, LABELS, MODELS, PLUGINS

TUTORIAL = "tutorial"
TUTORIAL_SYMBOL = "tutorialLabelImage"
EPOCH = (2024, 1, 1, 0, 0, 0)

# The tutorial's entry point (bench/plugins/baseline/baseline.py) with the plugin
# and symbol names of this bench.
TUTORIAL_MAIN = f'''"""eKuiper's Python TFLite tutorial plugin, as plugin `{TUTORIAL}`, function `{TUTORIAL_SYMBOL}`."""
from ekuiper import PluginConfig, plugin

from label_func import labelIns

if __name__ == "__main__":
    c = PluginConfig("{TUTORIAL}", {{}}, {{}}, {{"{TUTORIAL_SYMBOL}": lambda: labelIns}})
    plugin.start(c)
'''

TUTORIAL_MANIFEST = (
    '{"version": "v1.0.0", "language": "python", "executable": "tutorial.py", '
    f'"sources": [], "sinks": [], "functions": ["{TUTORIAL_SYMBOL}"]}}\n'
)

# The tutorial asks for `pip install pynng ekuiper tflite_runtime`; ekuiper pins
# its pynng, and LiteRT replaces tflite_runtime (bench/plugins/baseline/label.py).
TUTORIAL_INSTALL = """#!/bin/sh
set -eu
PY=python
if [ "${1:-}" = "--python" ]; then PY="$2"; fi
echo "tutorial: installing into $PY"
"$PY" -m pip install --disable-pip-version-check --no-input -q ekuiper pillow numpy ai-edge-litert
"$PY" -c "import ekuiper, pynng, PIL, numpy, ai_edge_litert"
"""


def build_tutorial_zip(out: Path) -> Path:
    """The tutorial plugin's zip: manifest, entry point, label.py, label_func.py,
    install.sh, the model and the labels (under the names label.py looks for)."""
    files: Dict[str, bytes] = {
        f"{TUTORIAL}.json": TUTORIAL_MANIFEST.encode(),
        "tutorial.py": TUTORIAL_MAIN.encode(),
        "install.sh": TUTORIAL_INSTALL.encode(),
        "label.py": (PLUGINS / "baseline" / "label.py").read_bytes(),
        "label_func.py": (PLUGINS / "baseline" / "label_func.py").read_bytes(),
        DEFAULT_MODEL: (MODELS / DEFAULT_MODEL).read_bytes(),
        "labels.txt": (MODELS / LABELS).read_bytes(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if name in ("install.sh", "tutorial.py") else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    return out


def build_pyai_zip(out: Path) -> Path:
    from pyai.plugin import package

    return package.build(out)
