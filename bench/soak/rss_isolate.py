#!/usr/bin/env python3
"""Where the serving process's RSS swing of the hour's soak comes from, without kuiperd
(issue #20: +7.2 MB over the hour, 163-171 MB, down as well as up).

Each variant runs in a fresh child process: pyai's own function objects answering
the host's raw requests (``handle_function_request``, the plugin's config file, the
request bytes eKuiper sends for a BINARY stream: base64 in JSON), on two threads as
the plugin serves its two symbols, as fast as they go: ``labelImage`` frame by frame
and ``labelImages`` over windows of 8. The frames are the soak's (the 720p photo with
one of tests/test_hostile.py's inputs every 20 frames, bench/soak/soak_ekuiper.py),
or its good frames only, or its hostile ones only. Every ``--sample-s`` the child
reads its own VmRSS, /proc/self/smaps_rollup and glibc's mallinfo2, and the p50 of
its labelImage calls on good frames.

    python bench/soak/rss_isolate.py --seconds 240 --variants mix,mix+mmap128
    python bench/soak/rss_isolate.py --seconds 150 --variants good,hostile,mix+arena2

A variant is ``<inputs>[+<setting>...]``: inputs ``mix``, ``good``, ``hostile``;
settings ``mmap<K>`` (pyai.allocator.fix_mmap_threshold(K)), ``arena<N>``
(M_ARENA_MAX), ``trim`` (malloc_trim(0) after every call), ``gc`` (gc.collect()
after every call: whether uncollected reference cycles hold the memory). Variants run back to back
in one invocation; compare within it. Writes bench/results/<arch>-rss-isolate.json
(``--out``). CPU-heavy: run under ``flock /tmp/pyai-timing.lock``.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402

WINDOW = 8
META = {"labelImage": {"ruleId": "soak_label", "opId": "op2", "instanceId": 0, "funcId": 0},
        "labelImages": {"ruleId": "soak_window", "opId": "op2", "instanceId": 0, "funcId": 0}}


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo2() -> Optional[Dict[str, float]]:
    """glibc's heap counters in MB (arena: heap bytes from the system; hblkhd: mmapped
    blocks; uordblks/fordblks: in use/free in the arenas)."""
    from pyai import allocator

    lib = allocator.glibc()
    if lib is None or not hasattr(lib, "mallinfo2"):
        return None
    lib.mallinfo2.restype = MallInfo2
    m = lib.mallinfo2()
    return {k: round(getattr(m, k) / 2**20, 2) for k in ("arena", "hblkhd", "uordblks", "fordblks", "keepcost")} | {
        "hblks": m.hblks}


def smaps_rollup() -> Dict[str, float]:
    out: Dict[str, float] = {}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
                out[key] = round(int(rest.split()[0]) / 1024, 2)
    except OSError:
        pass
    return out


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 2)
    return float("nan")


def request_parts(b64: List[bytes], meta: Dict[str, Any]) -> List[bytes]:
    """The bytes eKuiper sends, in pieces: one frame as a base64 string, a window as a
    list of them."""
    tail = b"," + json.dumps(json.dumps(meta)).encode() + b"]}"
    if len(b64) == 1:
        return [b'{"func":"Exec","arg":["', b64[0], b'"' + tail]
    parts = [b'{"func":"Exec","arg":[["']
    for i, b in enumerate(b64):
        parts += [b, b'","' if i < len(b64) - 1 else b'"]']
    return parts + [tail]


def fill(buf: bytearray, parts: List[bytes]) -> Tuple[bytearray, int]:
    """Write a request into the reused receive buffer (a new one only when it is too
    small, as the transport does) without building it whole: the driver must not add
    large allocations of its own."""
    n = sum(len(p) for p in parts)
    if len(buf) < n:
        buf = bytearray(max(n, 2 * len(buf)))  # as pyai/plugin/sp.py grows its buffer
    pos = 0
    for p in parts:
        buf[pos:pos + len(p)] = p
        pos += len(p)
    return buf, n


def soak_frames(inputs: str) -> List[tuple]:
    """(bytes, good?) in the soak's order, or its good / hostile frames only."""
    from bench.soak.soak_ekuiper import hostile_frames

    assets = benchlib.ensure_assets()
    images = {Path(p).name: Path(p).read_bytes() for p in assets["photos"]}
    good = images["cat_720p.jpg"]
    bad = [data for _, data in hostile_frames(images)]
    if inputs == "good":
        return [(good, True)]
    if inputs == "hostile":
        return [(b, False) for b in bad]
    mix: List[tuple] = []
    for b in bad:
        mix.extend([(good, True)] * 19 + [(b, False)])
    return mix


def child(variant: str, seconds: float, sample_s: float) -> None:
    from pyai import allocator

    import gc

    inputs, *settings = variant.split("+")
    trim_each, collect_each = "trim" in settings, "gc" in settings
    for setting in settings:
        if setting.startswith("mmap"):
            assert allocator.fix_mmap_threshold(int(setting[4:])), "mallopt refused"
        elif setting.startswith("arena"):
            assert allocator.set_option("arena_max", int(setting[5:])), "mallopt refused"
    from pyai.config import load_config
    from pyai.plugin.functions import ClassifierHolder, build_functions
    from pyai.plugin.runtime import handle_function_request

    assets = benchlib.ensure_assets()
    config = load_config(REPO / "pyai" / "plugin" / "files" / "pyai_config.json", env={},
                         model=str(assets["model"]), labels=str(assets["labels"]))
    from pyai.classifier import Classifier

    holder = ClassifierHolder(lambda: Classifier(config), background=False)
    fns = {name: make() for name, make in build_functions(holder).items()}
    frames = soak_frames(inputs)
    encoded: Dict[int, bytes] = {}  # one base64 copy per distinct frame object
    b64 = [encoded.setdefault(id(f), base64.b64encode(f)) for f, _ in frames]
    single = [(request_parts([b], META["labelImage"]), good) for b, (_, good) in zip(b64, frames)]
    windows = [(request_parts([b64[(i + j) % len(b64)] for j in range(WINDOW)], META["labelImages"]), None)
               for i in range(0, len(frames), WINDOW)]
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"labelImage": 0, "labelImages": 0, "errors": 0}
    lat: List[float] = []

    def serve(name: str, reqs: List[Any]) -> None:
        fn, buf, i = fns[name], bytearray(1 << 16), 0
        while not stop.is_set():
            parts, good = reqs[i % len(reqs)]
            buf, n = fill(buf, parts)
            t = time.perf_counter()
            reply = handle_function_request(fn, buf, n)
            dt = time.perf_counter() - t
            if collect_each:
                gc.collect()
            if trim_each:
                allocator.trim()
            with lock:
                counts[name] += 1
                if b'"state":false' in reply[:20]:
                    counts["errors"] += 1
                elif good:
                    lat.append(dt)
            i += 1

    threads = [threading.Thread(target=serve, args=("labelImage", single), daemon=True),
               threading.Thread(target=serve, args=("labelImages", windows), daemon=True)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    all_lat: List[float] = []
    while time.monotonic() - t0 < seconds:
        time.sleep(min(sample_s, max(0.0, seconds - (time.monotonic() - t0))))
        with lock:
            mine, lat[:] = sorted(lat), []
            snap = dict(counts)
        all_lat.extend(mine)
        print(json.dumps({"t_s": round(time.monotonic() - t0, 1), "rss_mb": vm_rss_mb(), "smaps": smaps_rollup(),
                          "mallinfo2": mallinfo2(), **snap, "threads_alive": sum(t.is_alive() for t in threads),
                          "p50_ms": round(benchlib.quantile(mine, 0.5) * 1e3, 2) if mine else None}), flush=True)
    stop.set()
    for t in threads:
        t.join(30)
    all_lat.sort()
    print(json.dumps({"end": True, "p50_ms": round(benchlib.quantile(all_lat, 0.5) * 1e3, 3) if all_lat else None,
                      "p90_ms": round(benchlib.quantile(all_lat, 0.9) * 1e3, 3) if all_lat else None,
                      "good_calls": len(all_lat)}), flush=True)


def run_variant(variant: str, seconds: float, sample_s: float) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--seconds", str(seconds), "--sample-s", str(sample_s)]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=seconds + 300)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    samples = [r for r in rows if not r.get("end")]
    end = next((r for r in rows if r.get("end")), {})
    rss = [s["rss_mb"] for s in samples]
    out = {"variant": variant, "started": time.strftime("%H:%M:%S", time.gmtime(started)), "rc": proc.returncode,
           "samples": samples, **{k: v for k, v in end.items() if k != "end"}}
    if rss:
        # As the soak's target: from the first sample after the warm-up to the last.
        first = rss[min(len(rss) - 1, max(1, len(rss) // 8))]
        out.update(rss_first_mb=first, rss_last_mb=rss[-1], rss_min_mb=min(rss), rss_max_mb=max(rss),
                   rss_growth_mb=round(rss[-1] - first, 2), rss_swing_mb=round(max(rss) - min(rss), 2))
    if proc.returncode:
        out["stderr_tail"] = proc.stderr[-2000:]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="mix,mix+mmap128")
    ap.add_argument("--seconds", type=float, default=240.0, help="per variant")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.seconds, args.sample_s)
        return 0
    started = time.time()
    results = []
    for v in args.variants.split(","):
        r = run_variant(v, args.seconds, args.sample_s)
        results.append(r)
        print(f"{v:>16}: RSS {r.get('rss_first_mb')} -> {r.get('rss_last_mb')} MB (growth {r.get('rss_growth_mb')}, "
              f"min {r.get('rss_min_mb')}, max {r.get('rss_max_mb')}), labelImage p50 {r.get('p50_ms')} ms over "
              f"{r.get('good_calls')} good calls, rc {r['rc']}", flush=True)
    res = {"created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started)),
           "command": "python bench/soak/rss_isolate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "seconds_per_variant": args.seconds, "machine": benchlib.machine_info(), "variants": results}
    out = args.out or REPO / "bench" / "results" / f"{benchlib.results_stem(res['machine'])}-rss-isolate.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
