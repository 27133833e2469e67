#!/usr/bin/env python3
"""Where a labelImage call spends its time inside the running plugin process.

    python bench/protocol/profile_plugin.py [--frame 720p] [--seconds 20] [--plugin pyai] [--python CMD]

Starts a bench plugin (default: the packaged pyai) with the host emulator, keeps it
busy with labelImage calls on one frame, and samples the plugin process with
py-spy (``pip install py-spy``; needs ptrace rights on the process). Prints the
functions with the most samples (own and inclusive), split by thread, and writes
the collapsed stacks (flamegraph input) to --out.

Without py-spy it falls back to cProfile of the in-process path (bench/protocol/stages.py
--profile), which sees Python frames only and no transport.
"""

from __future__ import annotations

import argparse
import collections
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402


def summarize_collapsed(path: Path, top: int) -> str:
    own: Dict[str, int] = collections.Counter()
    incl: Dict[str, int] = collections.Counter()
    threads: Dict[str, int] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
        for f in set(frames[1:]):
            incl[f] += n
    if not total:
        return "no samples (is the plugin busy? does py-spy have ptrace rights?)"
    out = [f"{total} samples (active threads only)"]
    out.append("by thread: " + ", ".join(f"{t} {c / total:.0%}" for t, c in threads.most_common(6)))
    out.append(f"\ntop {top} by own samples:")
    out += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    out.append(f"\ntop {top} by inclusive samples:")
    out += [f"  {c / total:6.1%}  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", choices=sorted(benchlib.FRAMES), default="720p")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--plugin", default="pyai", help="pyai, floor, transport, sdk_const or baseline")
    ap.add_argument("--python", help="plugin interpreter (default: install the zip with install.sh into a fresh venv)")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "pyai-profile",
                    help="where the collapsed stacks go (default: $TMPDIR/pyai-profile)")
    args = ap.parse_args(argv)

    benchlib.ensure_assets()
    with tempfile.TemporaryDirectory(prefix="pyai-prof-") as tmp:
        env = benchlib.prepare_env(Path(tmp), shlex.split(args.python) if args.python else None)
        if shutil.which(args.py_spy) is None and not Path(args.py_spy).exists():
            print("py-spy not found (pip install py-spy): cProfile of the in-process path instead")
            return subprocess.call(env.python + [str(HERE / "stages.py"), "--pyai-dir", str(env.pyai_dir),
                                                 "--profile", args.frame])
        payload = benchlib.exec_request(benchlib.frame_bytes()[args.frame])
        args.out.mkdir(parents=True, exist_ok=True)
        collapsed = args.out / f"{args.plugin}-{args.frame}.collapsed.txt"
        with benchlib.running_plugin(env, env.specs[args.plugin]) as run:
            for _ in range(20):
                benchlib.call(run.host, payload)
            cmd = [args.py_spy, "record", "--pid", str(run.pid), "--rate", str(args.rate), "--duration",
                   str(int(args.seconds)), "--format", "raw", "--output", str(collapsed), "--threads"]
            if args.native:
                cmd.append("--native")
            spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lat: List[float] = []
            stop = threading.Event()

            def hammer() -> None:
                while not stop.is_set():
                    lat.append(benchlib.call(run.host, payload)[1])

            t = threading.Thread(target=hammer, daemon=True)
            t.start()
            out, _ = spy.communicate(timeout=args.seconds + 60)
            stop.set()
            t.join(timeout=10)
        print(out.strip().splitlines()[-1] if out.strip() else "")
        s = benchlib.summarize(lat)
        print(f"{args.plugin}, {args.frame}: {s['n']} calls while sampled, p50 {s['p50']:.2f} ms "
              f"(py-spy slows the process a little)")
        if collapsed.exists():
            print(summarize_collapsed(collapsed, args.top))
            print(f"\ncollapsed stacks: {collapsed} (flamegraph.pl or speedscope.app read them)")
        else:
            print(f"py-spy wrote nothing: {out[-2000:]}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
