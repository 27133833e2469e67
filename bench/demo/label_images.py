#!/usr/bin/env python3
"""The main job: package the plugin, install it as eKuiper would, and label photos through
the real plugin protocol, printing each top-1 label and per-frame latency.

    python bench/demo/label_images.py [IMAGE_OR_FOLDER ...] [--repeat N] [--zip dist/pyai.zip]

With no paths it labels the sample photos (fetched by models/fetch.py --images).
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.hostsim import PluginHost, install_zip  # noqa: E402
from pyai.plugin import package  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}


def collect(paths: list[str]) -> list[Path]:
    if not paths:
        fetch = runpy.run_path(str(REPO / "models" / "fetch.py"))
        return sorted(fetch["fetch_images"](quiet=True))
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="images or folders (default: the sample photos)")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per image after the first (default 20)")
    ap.add_argument("--zip", type=Path, help="use this plugin zip instead of building dist/pyai.zip")
    args = ap.parse_args(argv)

    images = collect(args.paths)
    if not images:
        print("no images to label", file=sys.stderr)
        return 1
    zip_path = args.zip or package.build(REPO / "dist" / "pyai.zip")
    print(f"plugin zip: {zip_path}")
    with tempfile.TemporaryDirectory(prefix="pyai-demo-") as work:
        t0 = time.perf_counter()
        plugin_dir, python, log = install_zip(zip_path, work)
        print(f"installed with install.sh into a fresh venv in {time.perf_counter() - t0:.1f} s")
        print("  " + "\n  ".join(line for line in log.splitlines() if line.startswith("pyai:")))
        with PluginHost(plugin_dir, [str(python)]) as host:
            t0 = time.perf_counter()
            host.start()
            host.start_symbol("labelImage")
            first = host.exec("labelImage", images[0].read_bytes())
            print(f"process start to first answer: {(time.perf_counter() - t0) * 1000:.0f} ms\n")
            if not first.state:
                print(f"first call failed: {first.result}\n{host.log_text()}", file=sys.stderr)
                return 1
            print(f"{'image':30s} {'size':>8s}  {'top-1 label':36s} {'conf':>5s}  {'first':>7s} {'p50':>7s} {'min':>7s}")
            all_times = []
            failed = 0
            for path in images:
                data = path.read_bytes()
                first = host.exec("labelImage", data)
                times = [first.seconds]
                for _ in range(args.repeat):
                    reply = host.exec("labelImage", data)
                    times.append(reply.seconds)
                all_times += times[1:]
                if reply.state if args.repeat else first.state:
                    top = first.result[0]
                    label, conf = top["label"], f"{top['confidence']:.2f}"
                else:
                    failed += 1
                    label, conf = f"ERROR {first.result}", ""
                print(
                    f"{path.name[:30]:30s} {len(data) / 1024:7.0f}K  {label[:36]:36s} {conf:>5s}  "
                    f"{first.seconds * 1000:6.1f}ms {statistics.median(times) * 1000:6.1f}ms {min(times) * 1000:6.1f}ms"
                )
            if all_times:
                p50 = statistics.median(all_times)
                print(f"\n{len(all_times)} timed calls: p50 {p50 * 1000:.2f} ms per frame ({1 / p50:.0f} frames/s through the protocol)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
