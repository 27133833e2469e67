"""Build ``dist/pyai.zip``, laid out as eKuiper's portable-plugin installer expects.

    python -m pyai.plugin.package [--out dist/pyai.zip]

Layout (zip root = plugin folder, except ``functions/`` which eKuiper copies to
its own config folder): ``pyai.json``, ``main.py`` (the executable),
``requirements.txt``, ``install.sh``, ``pyai_config.json``, the model and labels,
``functions/*.json``, the ``pyai/`` package and the ``native_preproc/`` sources.

Every directory has an entry of its own, listed before anything inside it:
eKuiper v2.4.0 unzips a file by creating only its immediate parent folder (one
``Mkdir``), so ``pyai/plugin/runtime.py`` fails unless ``pyai/`` and
``pyai/plugin/`` were created by earlier entries.
"""

from __future__ import annotations

import argparse
import json
import runpy
import stat
import sys
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Set, Tuple

REPO = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "files"
# Fixed timestamp: the same sources give the same zip bytes.
EPOCH = (2024, 1, 1, 0, 0, 0)
NATIVE_SOURCES = (
    "native_preproc.c", "native_preproc.pyi", "native_jpeg.c", "native_jpeg.pyi", "native_dcsig.c", "native_dcsig.pyi",
    "setup.py", "pyproject.toml",
)


def _entries(model: Path, labels: Path) -> Iterator[Tuple[str, Path]]:
    yield "pyai.json", REPO / "pyai.json"
    for name in ("main.py", "requirements.txt", "install.sh", "pyai_config.json"):
        yield name, FILES / name
    for fn in sorted((FILES / "functions").glob("*.json")):
        yield f"functions/{fn.name}", fn
    pkg = REPO / "pyai"
    for src in sorted(pkg.rglob("*.py")):
        rel = src.relative_to(REPO)
        if FILES in src.parents:
            continue
        yield rel.as_posix(), src
    for name in NATIVE_SOURCES:
        src = REPO / "native_preproc" / name
        if src.exists():
            yield f"native_preproc/{name}", src
    yield model.name, model
    yield labels.name, labels


def _with_directories(entries: Iterator[Tuple[str, Path]]) -> Iterator[Tuple[str, Optional[Path]]]:
    """The entries, each preceded by the directory entries (``a/``, ``a/b/``) not yet listed."""
    listed: Set[str] = set()
    for arcname, src in entries:
        parts = arcname.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i]) + "/"
            if folder not in listed:
                listed.add(folder)
                yield folder, None
        yield arcname, src


def build(out: Path) -> Path:
    config = json.loads((FILES / "pyai_config.json").read_text())
    fetch = runpy.run_path(str(REPO / "models" / "fetch.py"))
    model, labels = fetch["fetch"]([config["model"], config["labels"]], REPO / "models", quiet=True)
    manifest = json.loads((REPO / "pyai.json").read_text())
    for fn in manifest["functions"]:
        if not (FILES / "functions" / f"{fn}.json").exists():
            raise SystemExit(f"pyai.json lists {fn} but functions/{fn}.json is missing")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, src in _with_directories(_entries(model, labels)):
            info = zipfile.ZipInfo(arcname, EPOCH)
            if src is None:
                # A directory: unix mode with S_IFDIR, and the MS-DOS directory flag.
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
                continue
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = arcname in ("install.sh", "main.py")
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            zf.writestr(info, src.read_bytes())
    tmp.replace(out)
    return out


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "dist" / "pyai.zip")
    args = ap.parse_args(argv)
    out = build(args.out)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
