"""Check a model before deploying it: ``python -m pyai.check_model MODEL [IMAGE ...]``.

Prints what pyai takes from the model (labels, normalisation, score kind: config >
metadata > graph) and the top-k of each image, or the one-line reason the model is
refused (exit status 1). ``--config`` reads a ``pyai_config.json`` (file or folder)
as the plugin would; ``--set key=value`` overrides one of its keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .config import load_config
from .errors import PyaiError


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyai.check_model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--config", help="a pyai_config.json (or its folder) to read as the plugin does")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    try:
        from .classifier import Classifier

        cfg = load_config(args.config, env={}, model=str(Path(args.model).resolve()), **overrides)
        with Classifier(cfg) as clf:
            print(json.dumps(clf.describe(), indent=2))
            print(f"labels: {len(clf.labels)}, first {clf.labels[:3]}")
            for image in args.images:
                print(f"{image.name}: {json.dumps(clf.label(image.read_bytes()))}")
    except (PyaiError, OSError, TypeError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
