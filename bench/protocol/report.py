#!/usr/bin/env python3
"""pyai side by side with the tutorial baseline and the floor, through the real protocol.

    python bench/protocol/report.py [--quick] [--python CMD] [--calls N] [--soak-calls N] ...

What it does, in one session, one plugin process at a time:
  1. builds dist/pyai.zip and installs it as eKuiper does (install.sh into a fresh
     venv; with --python / PYAI_PLUGIN_PYTHON it only unpacks it and uses that
     interpreter, e.g. the emulated arm64 one);
  2. process start to first answer of the packaged plugin (the first start after
     the install, then --starts more), and top-1 of every sample photo through it;
  3. --rounds interleaved rounds (rotating order) of: end to end through the host
     emulator on the 720p and 1080p frames for the tutorial baseline (ekuiper SDK;
     in full mode also with the tutorial's own tflite_runtime), a constant reply
     through the SDK, a constant reply through pyai's runtime (the transport floor),
     a floor plugin (transport + scaled decode + invoke in one process) and pyai;
     and the per-stage timings of pyai's path, in-process, with the plugin's
     interpreter (bench/protocol/stages.py; the first one also computes the accuracy
     reference: Pillow full decode + antialiased BILINEAR);
  4. a soak of --soak-calls calls through the protocol: RSS of the plugin process
     and live Python objects inside it (a probe symbol added by a wrapper, pyai's
     code unchanged);
then prints the table and writes bench/results/<arch>.json and <arch>.png
(<arch>-emulated.* under qemu, so an emulated run never replaces a board's numbers).

The floor is transport (pyai runtime, constant reply) + bare scaled decode
(simplejpeg with min_width/min_height at the classifier's decode size for the frame) + bare invoke
(Model.run), each measured in this run, summed at p50 (and at p90/p99, which
over-states the tails of a sum). The floor plugin measures the same work in one
process as a cross-check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import subprocess
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402
from bench.common.benchlib import FRAMES, summarize  # noqa: E402
from bench.protocol.summary import (  # noqa: E402
    TARGETS, accuracy, compose, log, print_report, stage_split, verdicts, write_chart,
)

E2E_ORDER = ["transport", "sdk_const", "floor", "pyai", "baseline", "baseline_tflrt"]

MODES = {
    #          calls baseline rounds soak starts stage
    "full":   (600, 90, 3, 5000, 5, 300),
    "quick":  (120, 16, 2, 500, 2, 60),
    "emulated": (16, 4, 1, 60, 1, 10),
}


# -- phases ----------------------------------------------------------------------------------


def run_worker(env: benchlib.PluginEnv, calls: int, out: Path, photos: bool) -> Dict[str, Any]:
    """bench/protocol/stages.py with the plugin's interpreter: per-stage samples (and accuracy refs)."""
    cmd = env.python + [str(HERE / "stages.py"), "--pyai-dir", str(env.pyai_dir), "--calls", str(calls),
                        "--out", str(out)] + ([] if photos else ["--no-photos"])
    # The plugins' environment: the worker's classifier then runs the same model as they do.
    subprocess.run(cmd, cwd=str(env.pyai_dir), check=True, env=env.plugin_env())
    return json.loads(out.read_text())


def merge_stage_rounds(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Pool the per-stage samples of every round's worker run."""
    merged: Dict[str, Any] = {k: v for k, v in runs[0].items() if k != "frames"}
    merged["frames"] = {}
    for fname in runs[0]["frames"]:
        first = runs[0]["frames"][fname]
        pooled: Dict[str, List[float]] = {}
        for run in runs:
            for stage, xs in run["frames"][fname]["samples_ms"].items():
                pooled.setdefault(stage, []).extend(xs)
        merged["frames"][fname] = {
            "bytes": first["bytes"],
            "decoded_shape": first["decoded_shape"],
            "stages": {stage: summarize([x / 1e3 for x in xs]) for stage, xs in pooled.items()},
        }
    merged["rounds"] = len(runs)
    return merged


def measure_starts(env: benchlib.PluginEnv, payload: bytes, n: int, timeout: float,
                   photos: List[Path]) -> Dict[str, Any]:
    """Process start (Popen) to the first labelImage answer, as a rule's first event sees it;
    the last start also labels every sample photo (the accuracy check)."""
    spec = env.specs["pyai"]
    times: List[float] = []
    ready_ms: List[float] = []
    accuracy: Dict[str, Any] = {}

    def body(run: benchlib.Running, last: bool) -> tuple:
        benchlib.call(run.host, payload)
        took = time.perf_counter() - run.t0
        ready = None
        for line in benchlib._read(str(run.log_path)).splitlines()[::-1]:
            if "pyai ready in" in line:
                try:
                    ready = float(line.split("pyai ready in")[1].split("ms")[0])
                except ValueError:
                    pass
                break
        acc = {}
        if last:
            for p in photos:
                res, _ = benchlib.call(run.host, benchlib.exec_request(p.read_bytes()))
                acc[p.name] = res[0]
        return took, ready, acc

    for i in range(n):
        took, ready, acc = benchlib.plugin_session(env, spec, timeout, lambda run: body(run, i == n - 1), log=log)
        times.append(took)
        if ready is not None:
            ready_ms.append(ready)
        accuracy.update(acc)
        log(f"  start {i + 1}/{n}: {took:.2f} s to the first answer")
    return {"seconds": times, "first_s": times[0], "median_s": sorted(times)[len(times) // 2],
            "max_s": max(times), "plugin_ready_ms": ready_ms, "accuracy_plugin": accuracy}


def measure_rounds(env: benchlib.PluginEnv, payloads: Dict[str, bytes], keys: List[str], calls: int,
                   baseline_calls: int, stage_calls: int, rounds: int, timeout: float,
                   photos: List[Path]) -> Dict[str, Any]:
    """Interleaved rounds: every round runs each plugin (one at a time) and the stage worker,
    in a rotating order, so slow phases of a noisy machine spread over all of them."""
    samples: Dict[str, Dict[str, List[float]]] = {k: {f: [] for f in payloads} for k in keys}
    starts: Dict[str, List[float]] = {k: [] for k in keys}
    stage_runs: List[Dict[str, Any]] = []
    extra: Dict[str, Any] = {}
    slots = keys + ["stages"]

    def share(total: int, r: int) -> int:
        return total // rounds + (1 if r < total % rounds else 0)

    def body(run: benchlib.Running, key: str, n: int) -> Dict[str, Any]:
        warm = 1 if key.startswith("baseline") else 10
        got: Dict[str, Any] = {"start": run.start_seconds, "samples": {}}
        for fname, payload in payloads.items():
            got["samples"][fname] = benchlib.timed_plugin_calls(run.host, payload, n, warmup=warm)
        if key == "baseline" and "baseline_accuracy" not in extra:
            acc = {}
            for p in photos:
                res, _ = benchlib.call(run.host, benchlib.exec_request(p.read_bytes()))
                acc[p.name] = res[0]
            got["accuracy"] = acc
        return got

    for r in range(rounds):
        order = slots[r % len(slots):] + slots[:r % len(slots)]
        for key in order:
            if key == "stages":
                n = max(share(stage_calls, r), 4)
                stage_runs.append(run_worker(env, n, env.workdir / f"stages-{r}.json", photos=(r == 0)))
                continue
            if key == "baseline":
                n = share(baseline_calls, r)
            elif key == "baseline_tflrt":
                n = share(max(baseline_calls // 3, rounds), r)
            else:
                n = share(calls, r)
            got = benchlib.plugin_session(env, env.specs[key], timeout, lambda run: body(run, key, n), log=log)
            starts[key].append(got["start"])
            for fname, xs in got["samples"].items():
                samples[key][fname] += xs
            if "accuracy" in got:
                extra["baseline_accuracy"] = got["accuracy"]
            p50s = ", ".join(f"{f} {summarize(xs)['p50']:.2f} ms" for f, xs in got["samples"].items())
            log(f"  round {r + 1}/{rounds} {key:10s} {n} calls/frame: p50 {p50s}")
    return {"samples": samples, "starts": starts, "stages": merge_stage_rounds(stage_runs), **extra}


def soak(env: benchlib.PluginEnv, payload: bytes, calls: int, timeout: float) -> Dict[str, Any]:
    """RSS (from outside) and live objects (probe symbol, after gc.collect) over many calls."""
    from tests.hostsim import go_json

    meta = go_json({"ruleId": "rule1", "opId": "op1", "instanceId": 0, "funcId": 1}).decode()
    probe_req = go_json({"func": "Exec", "arg": [meta]})  # benchProbe() takes no arguments
    step = max(calls // 10, 1)

    def body(run: benchlib.Running) -> Dict[str, Any]:
        host, pid = run.host, run.pid
        checkpoints: List[Dict[str, Any]] = []
        lat: List[float] = []
        for _ in range(200 if calls >= 1000 else 20):
            benchlib.call(host, payload)
        done = 0

        def checkpoint() -> None:
            inside, _ = benchlib.call(host, probe_req, benchlib.PROBE_SYMBOL)
            checkpoints.append({"calls": done, "rss_bytes": benchlib.rss_bytes(pid), **inside})

        checkpoint()
        while done < calls:
            for _ in range(min(step, calls - done)):
                lat.append(benchlib.call(host, payload)[1])
                done += 1
            checkpoint()
            c = checkpoints[-1]
            log(f"  soak {done}/{calls}: RSS {c['rss_bytes'] / 2**20:.1f} MB, "
                f"{c.get('gc_objects')} gc objects, {c.get('allocated_blocks')} blocks")
        return {"checkpoints": checkpoints, "latency": lat, "exe": benchlib.process_exe(pid)}

    got = benchlib.plugin_session(env, env.specs["probe"], timeout, body, log=log)
    checkpoints = got["checkpoints"]
    first, last = checkpoints[0], checkpoints[-1]
    half = checkpoints[len(checkpoints) // 2]
    out = {
        "calls": calls,
        "process_exe": os.path.basename(got["exe"]),
        "checkpoints": checkpoints,
        "rss_start_mb": first["rss_bytes"] / 2**20,
        "rss_end_mb": last["rss_bytes"] / 2**20,
        "rss_max_mb": max(c["rss_bytes"] for c in checkpoints) / 2**20,
        "rss_growth_mb": (last["rss_bytes"] - first["rss_bytes"]) / 2**20,
        "rss_growth_second_half_mb": (last["rss_bytes"] - half["rss_bytes"]) / 2**20,
        "latency": summarize(got["latency"]),
    }
    if "gc_objects" in first:
        out["gc_objects_delta"] = last["gc_objects"] - first["gc_objects"]
        out["gc_objects_per_call"] = out["gc_objects_delta"] / calls
        out["blocks_delta"] = last["allocated_blocks"] - first["allocated_blocks"]
        out["blocks_per_call"] = out["blocks_delta"] / calls
    return out


# -- main ------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run for CI (fewer calls, 500-call soak)")
    ap.add_argument("--python", help="run the plugins with this interpreter command instead of installing "
                    "with install.sh into a fresh venv (default: $PYAI_PLUGIN_PYTHON, if set)")
    ap.add_argument("--zip", type=Path, help="use this plugin zip instead of building one")
    ap.add_argument("--calls", type=int, help="timed calls per plugin and frame (full 600, quick 120)")
    ap.add_argument("--baseline-calls", type=int, help="timed calls of the baseline per frame (full 90, quick 16)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds over the plugins (full 3, quick 2)")
    ap.add_argument("--soak-calls", type=int, help="calls in the RSS/object soak (full 5000, quick 500; 0 skips)")
    ap.add_argument("--starts", type=int, help="process starts timed (full 5, quick 2; 0 skips)")
    ap.add_argument("--stage-calls", type=int, help="timed calls per stage (full 300, quick 60)")
    ap.add_argument("--tutorial-runtime", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the baseline with the tutorial's own runtime (tflite_runtime + NumPy 1.x, in "
                    "an extra venv; default: on in full mode, off with --quick or under emulation)")
    ap.add_argument("--skip", default="", help="comma-separated plugins to leave out of the e2e: " + ",".join(E2E_ORDER))
    ap.add_argument("--workdir", type=Path, help="keep the install and logs here (default: a temp dir, removed)")
    ap.add_argument("--out-dir", type=Path, default=benchlib.RESULTS, help="where <arch>.json/.png go")
    ap.add_argument("--no-save", action="store_true", help="print only; write no results files")
    ap.add_argument("--profile", action="store_true", help="also cProfile pyai's in-process path (720p) and print it")
    args = ap.parse_args(argv)

    assets = benchlib.ensure_assets()
    photos = [p for p in assets["photos"]]
    tmp = None
    if args.workdir:
        workdir = args.workdir.resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="pyai-bench-")
        workdir = Path(tmp.name)
    t_start = time.perf_counter()
    try:
        log(f"installing the plugin into {workdir} ...")
        env = benchlib.prepare_env(workdir, shlex.split(args.python) if args.python else None, args.zip)
        log(f"  {env.how} in {env.install_seconds:.1f} s")
        # Emulation is a property of the plugin's interpreter: ask it.
        probe = subprocess.run(env.python + ["-c", "import sys; sys.path.insert(0, sys.argv[1]); import benchlib, json; "
                                             "print(json.dumps(benchlib.emulation()))", str(benchlib.COMMON)],
                               capture_output=True, text=True, check=True)
        emulated = json.loads(probe.stdout)["emulated"]
        mode = "quick" if args.quick else "full"
        calls, base_calls, rounds, soak_calls, starts_n, stage_calls = MODES["emulated" if emulated and not args.quick else mode]
        if emulated and not args.quick:
            mode = "emulated"
        calls = args.calls if args.calls is not None else calls
        base_calls = args.baseline_calls if args.baseline_calls is not None else base_calls
        rounds = max(1, args.rounds if args.rounds is not None else rounds)
        soak_calls = args.soak_calls if args.soak_calls is not None else soak_calls
        starts_n = args.starts if args.starts is not None else starts_n
        stage_calls = args.stage_calls if args.stage_calls is not None else stage_calls
        timeout = benchlib.host_timeout_s(emulated)
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        keys = [k for k in E2E_ORDER if k not in skip]
        want_tflrt = args.tutorial_runtime if args.tutorial_runtime is not None else (mode == "full")
        if "baseline_tflrt" in keys and want_tflrt and env.sdk_dir is not None:
            log("tutorial runtime venv (tflite-runtime, numpy<2) for the extra baseline row ...")
            if not benchlib.add_tutorial_runtime(env, log):
                keys.remove("baseline_tflrt")
        elif "baseline_tflrt" in keys:
            keys.remove("baseline_tflrt")
        if env.sdk_dir is None:
            log("  the ekuiper SDK is not importable here (pip install ekuiper): baseline and SDK rows skipped")
            keys = [k for k in keys if not env.specs[k].needs_sdk]

        frames = benchlib.frame_bytes()
        payloads = {f: benchlib.exec_request(d) for f, d in frames.items()}

        starts: Dict[str, Any] = {}
        if starts_n > 0:
            log(f"process start to first answer ({starts_n} starts) ...")
            starts = measure_starts(env, payloads["720p"], starts_n, timeout, photos)
        log(f"{rounds} rounds over {', '.join(keys)} end to end, and the per-stage worker "
            "(bench/protocol/stages.py with the plugin's interpreter) ...")
        e2e = measure_rounds(env, payloads, keys, calls, base_calls, stage_calls, rounds, timeout, photos)
        stages = e2e.pop("stages")
        soak_res: Dict[str, Any] = {}
        if soak_calls > 0:
            log(f"soak: {soak_calls} calls through the protocol (RSS, live objects) ...")
            soak_res = soak(env, payloads["720p"], soak_calls, timeout)

        rows = compose(stages, e2e)
        acc = accuracy(stages, starts, e2e)
        res: Dict[str, Any] = {
            "schema": 1,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": mode,
            "settings": {"calls": calls, "baseline_calls": base_calls, "rounds": rounds, "soak_calls": soak_calls,
                         "starts": starts_n, "stage_calls": stage_calls, "host_timeout_s": timeout,
                         "plugins": keys, "frames": FRAMES},
            "machine": stages["machine"],
            "driver": {"arch": platform.machine(), "python": platform.python_version(),
                       "executable": os.path.basename(sys.executable)},
            "plugin_env": {"how": env.how, "python": [os.path.basename(c) for c in env.python], "install_seconds": env.install_seconds,
                           "sdk_version": env.sdk_version},
            "stages": stages,
            "e2e": rows,
            "e2e_samples_ms": {k: {f: [round(x * 1e3, 4) for x in xs] for f, xs in v.items()}
                               for k, v in e2e["samples"].items()},
            "plugin_start_to_handshake_s": e2e["starts"],
            "stage_split": stage_split(stages, rows),
            "start": starts,
            "soak": soak_res,
            "accuracy": acc,
            "targets": [],
            "targets_goals": TARGETS,
        }
        res["targets"] = verdicts(rows, starts, soak_res, acc, stages["machine"]["emulation"]["emulated"])
        res["bench_seconds"] = time.perf_counter() - t_start
        print_report(res)
        if args.profile:
            log("cProfile of pyai's in-process path (720p):")
            subprocess.run(env.python + [str(HERE / "stages.py"), "--pyai-dir", str(env.pyai_dir), "--profile", "720p"],
                           cwd=str(env.pyai_dir), check=False)
        if not args.no_save:
            benchlib.save_results(res, args.out_dir, benchlib.results_stem(res["machine"]), write_chart, log)
        log(f"bench took {time.perf_counter() - t_start:.0f} s")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
