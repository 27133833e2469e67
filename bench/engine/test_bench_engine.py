"""pytest-benchmark: the batching engine, on 720p JPEG frames and the default model.

    pytest bench/engine/test_bench_engine.py -s                 # numbers + tables
    pytest bench/engine/test_bench_engine.py -k "api or lone"   # skip the plugin install

- windows: frames/s of ``labelImages`` over windows of 8 frames vs 8 sequential
  ``labelImage`` calls, through the eKuiper protocol (host emulator + the
  packaged plugin) and through the Python API. Rounds interleave the two sides,
  so a noisy neighbour slows both alike.
- lone frame: one frame through the engine vs the direct path, p50 of pairs.
- sweep: engine frames/s per workers / threads / max_batch on this machine;
  run it on the target hardware to tune pyai_config.json.

These report numbers (``extra_info`` and a printed table); they assert only
that the answers are right.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Dict, List

import pytest

from bench.common import benchlib
from bench.engine import engine_tuning

WINDOW = 8
ROUNDS = int(os.environ.get("PYAI_BENCH_ENGINE_ROUNDS", "40"))
# Tables of this run, written to bench/results/<arch>-engine.json at the end when
# PYAI_BENCH_SAVE_ENGINE=1 (tox -e bench sets it).
SUMMARY: Dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _save_summary():
    yield
    if os.environ.get("PYAI_BENCH_SAVE_ENGINE") == "1" and SUMMARY:
        info = benchlib.machine_info()
        path = benchlib.RESULTS / f"{benchlib.results_stem(info)}-engine.json"
        doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info, "window": WINDOW,
               "rounds": ROUNDS, **SUMMARY}
        path.write_text(json.dumps(_finite(doc), indent=1, default=str))
        print(f"\nwrote {path}")


def _report_windows(benchmark, capsys, key: str, title: str, st: dict, threads: int,
                    singles: List[float], windows: List[float], paths: tuple, fps_keys: tuple,
                    info: Dict[str, object]) -> None:
    """One windows table (sequential, windows, work bound) and its extra_info, for
    either side (protocol or API): ``paths`` names the two rows, ``fps_keys`` their
    frames/s in extra_info."""
    bound = _work_bound(st, threads, singles)
    seq_fps, win_fps = _fps(singles), _fps(windows)
    benchmark.extra_info.update({
        "frame": "cat_720p.jpg", "window": WINDOW, fps_keys[0]: round(seq_fps, 1), fps_keys[1]: round(win_fps, 1),
        "speedup": round(win_fps / seq_fps, 3), "batch_mode": st["batch_mode"], "workers": st["workers"],
        "max_batch": st["max_batch"], "batch_sizes": st["batch_sizes"],
        "work_bound_speedup": round(bound["speedup"], 3), **info,
    })
    _table(capsys, title, key=key, rows=[
        {"path": paths[0], "p50 ms/window": statistics.median(singles) * 1e3, "frames/s": seq_fps, "speedup": 1.0},
        {"path": paths[1], "p50 ms/window": statistics.median(windows) * 1e3,
         "frames/s": win_fps, "speedup": win_fps / seq_fps},
        bound,
    ])


def _finite(value):
    """NaN (a table's empty cell) as null, so the file is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _table(capsys, title: str, rows: List[Dict[str, object]], key: str = "") -> None:
    if key:
        SUMMARY[key] = {"title": title, "rows": rows}
    with capsys.disabled():
        print(f"\n{title}")
        engine_tuning.print_table(rows, lambda line: print("  " + line))


def _fps(seconds_per_window: List[float]) -> float:
    return WINDOW / statistics.median(seconds_per_window)


def _work_bound(st: dict, threads: int, singles: List[float]) -> Dict[str, object]:
    """The best a window could do on this machine, from the same run's engine stats:
    every core busy with nothing but decode + resize (one core per frame) and
    inference (``threads`` cores), no transport, no waiting."""
    lat = st["latency"]
    decode_ms = lat["decode"]["p50_ms"]
    infer_ms = lat["inference_per_frame"]["p50_ms"]
    cores = benchlib.usable_cores()
    window_ms = WINDOW * (decode_ms + infer_ms * threads) / cores
    seq_ms = statistics.median(singles) * 1e3
    return {"path": f"work bound ({cores} cores: decode+resize {decode_ms:.2f} + "
                    f"invoke {infer_ms:.2f} x {threads} threads per frame)",
            "p50 ms/window": window_ms, "frames/s": WINDOW / window_ms * 1e3, "speedup": seq_ms / window_ms}


# -- windows of 8 through the protocol -------------------------------------------------------


@pytest.fixture(scope="module")
def window_plugin(plugin_env, emulated):
    spec = benchlib.PluginSpec("pyai_windows", "pyai", plugin_env.pyai_dir, "pyai: labelImage + labelImages",
                               symbols=("labelImage", "labelImages", "pyaiStats"))
    with benchlib.running_plugin(plugin_env, spec, benchlib.host_timeout_s(emulated)) as run:
        yield run


def test_windows_through_the_protocol(benchmark, window_plugin, frames, capsys):
    from tests.hostsim import go_json

    host = window_plugin.host
    frame = frames["720p"]
    meta = go_json({"ruleId": "rule1", "opId": "op1", "instanceId": 0, "funcId": 0}).decode()
    window_req = go_json({"func": "Exec", "arg": [[frame] * WINDOW, meta]})
    single_req = benchlib.exec_request(frame)
    want, _ = benchlib.call(host, single_req)
    got, _ = benchlib.call(host, window_req, "labelImages")
    assert got == [want] * WINDOW

    singles: List[float] = []

    def eight_singles():
        # pedantic's untimed setup: the sequential side of the same round.
        t0 = time.perf_counter()
        for _ in range(WINDOW):
            benchlib.call(host, single_req)
        singles.append(time.perf_counter() - t0)

    for _ in range(3):
        eight_singles()
    singles.clear()
    benchmark.group = "engine windows of 8 (protocol)"
    benchmark.pedantic(host.functions["labelImages"].request, args=(window_req,), setup=eight_singles,
                       rounds=ROUNDS, iterations=1, warmup_rounds=3)
    windows = list(benchmark.stats.stats.data)
    stats = benchlib.call(host, go_json({"func": "Exec", "arg": [meta]}), "pyaiStats")[0]
    st = stats["engine"]
    _report_windows(
        benchmark, capsys, "windows_protocol",
        f"windows of 8 x cat_720p.jpg through the eKuiper protocol (packaged plugin, "
        f"batch_mode={st['batch_mode']}, workers={st['workers']})",
        st, stats["model"]["threads"], singles, windows,
        ("8 x labelImage, sequential", "labelImages(window of 8)"),
        ("sequential_label_image_fps", "label_images_fps"),
        {"rounds": ROUNDS, "target_speedup": 1.5})


# -- windows of 8 through the Python API -------------------------------------------------------


def test_windows_through_the_api(benchmark, bench_classifier, frames, capsys):
    clf = bench_classifier
    frame = frames["720p"]
    window = [frame] * WINDOW
    want = clf.label(frame)
    assert clf.label_many(window) == [want] * WINDOW

    singles: List[float] = []

    def eight_singles():
        t0 = time.perf_counter()
        for x in window:
            clf.label(x)
        singles.append(time.perf_counter() - t0)

    benchmark.group = "engine windows of 8 (Python API)"
    benchmark.pedantic(clf.label_many, args=(window,), setup=eight_singles,
                       rounds=ROUNDS * 2, iterations=1, warmup_rounds=3)
    windows = list(benchmark.stats.stats.data)
    st = clf.stats()
    threads = clf.config.interpreter_threads
    _report_windows(
        benchmark, capsys, "windows_api",
        f"windows of 8 x cat_720p.jpg through the Python API (batch_mode={st['batch_mode']}, "
        f"workers={st['workers']}, threads={threads})",
        st, threads, singles, windows,
        ("8 x Classifier.label", "Classifier.label_many(8)"),
        ("sequential_label_fps", "label_many_fps"),
        {"threads": threads, "latency_p50_ms": {k: v.get("p50_ms") for k, v in st["latency"].items()}})


# -- a lone frame ------------------------------------------------------------------------------


def test_lone_frame_engine_vs_direct(benchmark, bench_classifier, frames, capsys):
    clf = bench_classifier
    frame = frames["720p"]
    engine = clf.engine
    direct: List[float] = []

    def one_direct():
        t0 = time.perf_counter()
        clf.label(frame)
        direct.append(time.perf_counter() - t0)

    def one_engine():
        return engine.submit(frame).result()

    assert one_engine() == clf.label(frame)
    benchmark.group = "engine lone frame"
    benchmark.pedantic(one_engine, setup=one_direct, rounds=ROUNDS * 10, iterations=1, warmup_rounds=10)
    via_engine = list(benchmark.stats.stats.data)
    d50, e50 = statistics.median(direct), statistics.median(via_engine)
    pair = statistics.median(e / d for d, e in zip(direct, via_engine))
    benchmark.extra_info.update({
        "direct_p50_ms": round(d50 * 1e3, 3), "engine_p50_ms": round(e50 * 1e3, 3),
        "overhead": round(e50 / d50 - 1, 4), "pairwise_overhead": round(pair - 1, 4), "target": 0.03,
    })
    _table(capsys, "a lone cat_720p.jpg frame: engine vs direct path", key="lone_frame", rows=[
        {"path": "Classifier.label (direct)", "p50 ms": d50 * 1e3, "vs direct": 1.0},
        {"path": "engine.submit().result()", "p50 ms": e50 * 1e3, "vs direct": e50 / d50},
        {"path": "median of per-pair ratios", "p50 ms": float("nan"), "vs direct": pair},
    ])


# -- tuning sweep ------------------------------------------------------------------------------


def test_tuning_sweep(benchmark, frames, capsys):
    cores = benchlib.usable_cores()
    threads = sorted({1, min(2, cores), min(cores, 4)})
    workers = sorted({1, 2, min(cores + 1, 4)})
    seconds = float(os.environ.get("PYAI_BENCH_SWEEP_SECONDS", "1.5"))
    lines: List[str] = []
    points = engine_tuning.sweep(frames["720p"], threads_list=threads, workers_list=workers,
                                 max_batch_list=(1, 4, 8), seconds=seconds, passes=3, log=lines.append)
    best, direct = engine_tuning.best_engine(points), engine_tuning.best_direct(points)
    benchmark.group = "engine tuning sweep"
    # The timed body is the best configuration's window, so the row means something.
    clf = engine_tuning.make_classifier(threads=best.threads)
    try:
        from pyai.engine import Engine

        with Engine(clf, workers=best.workers, max_batch=best.max_batch, batch_mode=best.batch_mode,
                    stats_log_interval_s=0) as eng:
            window = [frames["720p"]] * WINDOW
            benchmark.pedantic(lambda: [f.result() for f in eng.submit_many(window)],
                               rounds=20, iterations=1, warmup_rounds=2)
    finally:
        clf.close()
    benchmark.extra_info.update({
        "usable_cores": cores,
        "best": {"threads": best.threads, "workers": best.workers, "max_batch": best.max_batch,
                 "batch_mode": best.batch_mode, "fps": round(best.fps, 1)},
        "best_direct": {"threads": direct.threads, "fps": round(direct.fps, 1)},
        "speedup_vs_best_direct": round(best.fps / direct.fps, 3),
        "sweep": [{"threads": p.threads, "workers": p.workers, "max_batch": p.max_batch,
                   "batch_mode": p.batch_mode, "fps": round(p.fps, 1),
                   "fps_runs": [round(x, 1) for x in p.fps_runs]} for p in points],
    })
    rows = [{"threads": p.threads, "workers": p.workers or "-", "max_batch": p.max_batch if p.workers else "-",
             "batch_mode": p.batch_mode, "frames/s": p.fps, "vs best direct": p.fps / direct.fps,
             "spread": (max(p.fps_runs) - min(p.fps_runs)) / p.fps}
            for p in sorted(points, key=lambda p: -p.fps)]
    _table(capsys, f"engine sweep on {cores} usable cores, windows of 8 x cat_720p.jpg, median of 3 "
                   f"round-robin passes (workers '-' = direct path, sequential Classifier.label)", rows,
           key="sweep")
    SUMMARY["best"] = {"threads": best.threads, "workers": best.workers, "max_batch": best.max_batch,
                       "batch_mode": best.batch_mode, "vs_best_direct": round(best.fps / direct.fps, 3)}
    with capsys.disabled():
        print(f"  best: threads={best.threads} workers={best.workers} max_batch={best.max_batch} "
              f"(batch_mode={best.batch_mode}), {best.fps / direct.fps:.2f}x the best direct path "
              f"-> set these in pyai_config.json")
