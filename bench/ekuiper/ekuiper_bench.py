#!/usr/bin/env python3
"""pyai through the real host: kuiperd v2.4.0 + mosquitto, cameras publishing 720p JPEG.

    python bench/ekuiper/ekuiper_bench.py [--quick] [--plugins pyai,labelImages,tutorial,fixed_camera] [--no-save]

In one run, one host at a time (the IPC paths are fixed):
  1. mosquitto and kuiperd v2.4.0 on loopback (tests/ekuiper/harness.py), pythonBin
     a fresh venv; dist/pyai.zip and the tutorial plugin (bench/protocol/plugins/baseline as
     plugin `tutorial`, function `tutorialLabelImage`) installed with the tutorial's
     REST call; the stream `tfdemo` over the topics `tfdemo/#`, FORMAT="BINARY".
  2. For each rule (pyai's labelImage, labelImages over CountWindow(8), the tutorial
     plugin), a fresh rule per load: 1, 4 and 8 cameras at 30 fps, then a ramp of
     the total rate (8 cameras) from 0.8x the best labelled/s of the fixed loads, up
     10% a step while held, then one step halfway back: the highest rate held.
  3. pyai overloaded (1.5x its highest held rate) with the default rule options, and
     with a small bufferLength (1, 8).
  4. The fixed camera (``fixed_camera``, bench/ekuiper/ekuiper_gate.py): pyai's labelImage on
     a fixed camera's sequence of 720p frames (noise, jitter, dimming light, a cut
     every 100 frames), one camera, with the unchanged-frame gate off and then on:
     each a fresh plugin process (kuiperd restarted with PYAI_SKIP_UNCHANGED), probe
     loads for its capacity, then the ramp; pyaiStats() for the gate's counts.
  5. kuiperd stopped; pyai alone through the protocol (tests/hostsim.py's stand-in
     host, the bench's pyai row: 720p, frames/s = 1/p50) from the same install.
Prints a table and writes bench/results/<arch>-ekuiper.json and .png; with
``--plugins fixed_camera`` alone, only step 4 (and no install of the tutorial
plugins) and bench/results/<arch>-ekuiper-gate.json and .png instead.

A load: the generator (bench/ekuiper/ekuiper_cameras.py, its own process) publishes every
frame with QoS 0 on its own topic, which carries the camera, a sequence number and
the publish time; the rule returns `meta(topic)` with the label, so each result is
matched to its frame. Latency = result received by the bench's subscriber - publish
call, same clock. Labelled = frames whose result arrived (up to a grace period after
the last publish); lost = published - labelled. Held = labelled >= 98% of published,
labelled/s while publishing >= 97% of the rate published, and latency not growing
over the load (p50 of the last quarter of frames <= 1.5x the first quarter's + 25 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402
from bench.ekuiper import ekuiper_calls  # noqa: E402
from bench.ekuiper import ekuiper_gate  # noqa: E402
from bench.ekuiper import ekuiper_host  # noqa: E402
from bench.ekuiper import ekuiper_plugins  # noqa: E402
from bench.ekuiper import ekuiper_report  # noqa: E402
from bench.common.benchlib import quantile  # noqa: E402
from bench.ekuiper.ekuiper_host import RULES, Host, parse_frame_topic  # noqa: E402

log = logging.getLogger("pyai.bench.ekuiper")

FRAME = "cat_720p.jpg"
QOS = 0
CAMERA_FPS = 30.0
FIXED_CAMERAS = (1, 4, 8)
# The host's ceilings hold 1000+ frames/s: their fixed loads are 8 cameras at these fps.
CEILING_FPS = (30.0, 100.0, 200.0)
CEILING_KEYS = ("ceiling", "nofunc")
RAMP_CAMERAS = 8
# The ramp starts below the best labelled/s of the fixed loads (an overloaded load
# shows the capacity, but a noisy moment of this shared machine shows less) and
# climbs 10% a step.
RAMP_START = 0.8
RAMP_STEP = 1.1
HELD_LABELLED = 0.98
HELD_THROUGHPUT = 0.97
OVERLOAD_FACTOR = 1.5
CALLS_AFTER_START_S = 0.5  # the call-cycle probe's first snapshot, after the cameras start
# Rule options tried against the defaults (bufferLength 1024) when overloaded: each
# operator's input queue holds at most this many, dropping the oldest (v2.4.0).
FRESH_OPTIONS = ({"bufferLength": 1}, {"bufferLength": 8})


@dataclass
class Mode:
    seconds: float  # each fixed load
    ramp_seconds: float
    overload_seconds: float
    grace: float  # longest wait for results after the last publish
    protocol_calls: int
    ramp_steps: int  # most ramp steps before the halfway one


MODES = {"full": Mode(15, 10, 20, 8, 1000, 10), "quick": Mode(5, 4, 8, 4, 200, 6)}


def say(msg: str) -> None:
    print(msg, flush=True)


class Bench:
    def __init__(self, host: Host, mode: Mode, frame_path: Path) -> None:
        self.host = host
        self.mode = mode
        self.frame_path = frame_path
        self.frame = frame_path.read_bytes()
        self.collector = ekuiper_host.Collector(host.broker.port)
        self.ids = itertools.count(1)
        self.cores = os.cpu_count() or 1

    # -- one load ---------------------------------------------------------------------------

    def warm(self, rule_id: str, kind: ekuiper_host.RuleKind, tag: str) -> None:
        """Publish frames until the new rule answers (its MQTT source subscribes a moment
        after the rule starts), then let what is in flight arrive."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-bench-warm-{os.getpid()}")
        client.connect("127.0.0.1", self.host.broker.port)
        client.loop_start()
        try:
            deadline = time.monotonic() + 90
            seq = 0
            while time.monotonic() < deadline:
                for _ in range(kind.window):
                    client.publish(f"{ekuiper_host.STREAM}/W{tag}/c0/{seq}/{time.monotonic_ns()}", self.frame, qos=1)
                    seq += 1
                t_end = time.monotonic() + 2.0
                while time.monotonic() < t_end:
                    if self.collector.count():
                        break
                    time.sleep(0.05)
                if self.collector.count():
                    break
            else:
                raise RuntimeError(f"rule {rule_id} gave no result within 90 s\n{self.host.kuiperd.log_tail()}")
        finally:
            client.loop_stop()
            client.disconnect()
        self.drain(quiet=1.0, limit=10)
        self.collector.take()

    def publish_frames(self, prefix: str, count: int) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-bench-flush-{os.getpid()}")
        client.connect("127.0.0.1", self.host.broker.port)
        client.loop_start()
        try:
            for seq in range(count):
                client.publish(f"{prefix}/{seq}/{time.monotonic_ns()}", self.frame, qos=1).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

    def drain(self, quiet: float, limit: float) -> None:
        """Wait until no result came for ``quiet`` s, at most ``limit`` s."""
        deadline = time.monotonic() + limit
        last, last_t = self.collector.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            n = self.collector.count()
            if n != last:
                last, last_t = n, time.monotonic()
            elif time.monotonic() - last_t >= quiet:
                return

    def run_load(self, key: str, cameras: int, fps: float, seconds: float, phase: str,
                 options: Optional[Dict[str, Any]] = None, frames_dir: Optional[Path] = None,
                 name: Optional[str] = None) -> Dict[str, Any]:
        """One load of rule ``key`` (its row named ``name``, default the key): the
        cameras publish the bench's frame, or ``frames_dir``'s sequence."""
        kind = RULES[key]
        name = name or key
        n = next(self.ids)
        tag = f"L{n}"
        rule_id = f"{name}_{tag}"
        self.host.create_rule(rule_id, kind.sql, options)
        # pyai's own account of the serial call cycle while the cameras publish.
        probe = ekuiper_calls.StatsProbe(self.host, tag) if kind.plugin == "pyai" else None
        symbol = "labelImages" if kind.window > 1 else "labelImage"
        snap0 = snap1 = None
        try:
            if probe is not None:
                probe.snapshot()  # the probe's rule is answering before the load starts
            self.warm(rule_id, kind, tag)
            status0 = self.host.rest.rule_status(rule_id)
            groups = self.host.process_groups(kind.plugin)
            start_at = time.monotonic() + 2.0  # the generator's start-up (imports, 8 connects) before it
            source = ["--frames-dir", str(frames_dir)] if frames_dir else ["--frame", str(self.frame_path)]
            gen = subprocess.Popen(
                [sys.executable, str(HERE / "ekuiper_cameras.py"), "--port", str(self.host.broker.port),
                 "--cameras", str(cameras), "--fps", f"{fps:.4f}", "--seconds", str(seconds), "--qos", str(QOS),
                 "--prefix", f"{ekuiper_host.STREAM}/{tag}", *source, "--start-at", f"{start_at:.6f}"],
                stdout=subprocess.PIPE, text=True)
            time.sleep(max(0.0, start_at - time.monotonic()))
            cpu0 = {g: sum(ekuiper_host.cpu_seconds(p) for p in pids) for g, pids in groups.items()}
            cpu0["machine"] = ekuiper_host.machine_cpu_seconds()
            t0 = time.monotonic()
            with ekuiper_host.RssSampler({"kuiperd": groups["kuiperd"], "plugin": groups["plugin"],
                                          "mosquitto": groups["mosquitto"]}) as rss:
                if probe is not None:
                    # Once the cameras' first frames are in: the gap before them is idle, not the host's.
                    time.sleep(CALLS_AFTER_START_S)
                    snap0 = probe.snapshot()
                out, _ = gen.communicate(timeout=seconds + 120)
                t1 = time.monotonic()
                cpu1 = {g: sum(ekuiper_host.cpu_seconds(p) for p in pids) for g, pids in groups.items()}
                cpu1["machine"] = ekuiper_host.machine_cpu_seconds()
                if probe is not None:
                    snap1 = probe.snapshot()
                if gen.returncode != 0:
                    raise RuntimeError(f"the camera generator exited {gen.returncode}")
                gen_stats = json.loads(out.strip().splitlines()[-1])
                if kind.window > 1:
                    # Close the last, partial window: frames of another tag, not counted.
                    self.publish_frames(f"{ekuiper_host.STREAM}/F{tag}/c0", kind.window - 1)
                self.drain(quiet=1.5, limit=self.mode.grace)
            status1 = self.host.rest.rule_status(rule_id)
        finally:
            self.host.rest.delete_rule(rule_id)
            if probe is not None:
                probe.close()
        results = self.collector.take()
        row = self.summarize(name, tag, phase, cameras, fps, seconds, options, gen_stats, results,
                             status0, status1, cpu0, cpu1, t0, t1, rss)
        row.update(rule=key, rule_id=rule_id)
        if probe is not None:
            row["calls"] = {"while_publishing": ekuiper_calls.cycle(snap0, snap1, symbol),
                            "last": ((snap1 or {}).get("process") or {}).get("calls", {}).get(symbol)}
            if row["calls"]["while_publishing"]:
                say(ekuiper_report.calls_line(row["calls"]["while_publishing"]))
        return row

    def summarize(self, key: str, tag: str, phase: str, cameras: int, fps: float, seconds: float,
                  options: Optional[Dict[str, Any]], gen: Dict[str, Any], results: List[ekuiper_host.Result],
                  status0: Dict[str, Any], status1: Dict[str, Any], cpu0: Dict[str, float], cpu1: Dict[str, float],
                  t0: float, t1: float, rss: ekuiper_host.RssSampler) -> Dict[str, Any]:
        frames: Dict[tuple, Dict[str, Any]] = {}
        errors = 0
        for r in results:
            for topic, ok in zip(r.topics, r.ok):
                parsed = parse_frame_topic(topic)
                if parsed is None or parsed[0] != tag:
                    continue  # a warm-up frame
                if not ok:
                    errors += 1
                    continue
                _, cam, seq, t_ns = parsed
                frames.setdefault((cam, seq), {"t_pub": t_ns, "t_res": r.arrived_ns})
        published = int(gen["published"])
        wall = max(float(gen["wall_s"]), 1e-9)
        ordered = sorted(frames.values(), key=lambda f: f["t_pub"])
        lat = [(f["t_res"] - f["t_pub"]) / 1e6 for f in ordered]
        in_window = sum(1 for f in ordered if t0 * 1e9 <= f["t_res"] <= t1 * 1e9)
        q = max(len(lat) // 4, 1)
        first_q = sorted(lat[:q])
        last_q = sorted(lat[-q:])
        lat_sorted = sorted(lat)
        labelled = len(frames)
        p50_first = quantile(first_q, 0.5) if first_q else float("nan")
        p50_last = quantile(last_q, 0.5) if last_q else float("nan")
        growing = bool(lat) and p50_last > 1.5 * p50_first + 25.0
        elapsed = max(t1 - t0, 1e-9)
        # A standing queue that neither grows nor drops within the load still means the
        # plugin is behind: results must also come while publishing, at the offered rate.
        keeping_up = in_window / elapsed >= HELD_THROUGHPUT * (published / wall)
        held = published > 0 and labelled >= HELD_LABELLED * published and not growing and keeping_up
        counters = kuiperd_counters(status0, status1)
        used = {g: cpu1[g] - cpu0[g] for g in cpu0}  # CPU seconds over the publishing window
        # The generator's CPU over its own wall time, scaled to this window.
        used["cameras"] = float(gen["cpu_s"]) / wall * elapsed
        # Everything else the machine did meanwhile (other users' jobs): how noisy the step was.
        used["others"] = max(0.0, used["machine"] - sum(v for g, v in used.items() if g not in ("machine", "others")))
        cpu = {g: v / elapsed / self.cores for g, v in used.items()}
        # CPU per frame labelled in the window (the primary figure: robust to a noisy machine).
        cpu_ms = {g: v * 1e3 / max(in_window, 1) for g, v in used.items()}
        row = {
            "plugin": key, "phase": phase, "tag": tag, "cameras": cameras, "fps_per_camera": fps,
            "seconds": seconds, "options": options or {}, "qos": QOS,
            "offered_fps": cameras * fps, "published": published, "published_fps": published / wall,
            "late_publishes": sum(c["late"] for c in gen["per_camera"]),
            "labelled": labelled, "errors": errors, "lost": published - labelled,
            "labelled_fps": in_window / elapsed,
            "labelled_share": labelled / published if published else 0.0,
            "latency_ms": {"p50": quantile(lat_sorted, 0.5), "p99": quantile(lat_sorted, 0.99),
                           "max": lat_sorted[-1] if lat_sorted else float("nan"),
                           "first_quarter_p50": p50_first, "last_quarter_p50": p50_last},
            "latency_growing": growing, "held": held,
            "cpu_share": cpu,  # of the whole machine (all cores), over the publishing window
            "cpu_ms_per_frame": cpu_ms,  # utime+stime per frame labelled in the window
            "rss_mb": {"peak": rss.peak, "first": rss.first},
            "kuiperd": counters,
        }
        say(ekuiper_report.row_line(row))
        return row

    # -- phases -----------------------------------------------------------------------------

    def fixed(self, key: str) -> List[Dict[str, Any]]:
        if key in CEILING_KEYS:
            return [self.run_load(key, RAMP_CAMERAS, fps, self.mode.seconds, "fixed") for fps in CEILING_FPS]
        return [self.run_load(key, c, CAMERA_FPS, self.mode.seconds, "fixed") for c in FIXED_CAMERAS]

    def ramp(self, key: str, capacity: float, cameras: int = RAMP_CAMERAS, frames_dir: Optional[Path] = None,
             name: Optional[str] = None) -> List[Dict[str, Any]]:
        """Total rate from RAMP_START x the capacity the fixed loads (or the fixed
        camera's probes) showed, up by RAMP_STEP while held; after the first miss,
        one step halfway back."""
        rows: List[Dict[str, Any]] = []
        rate = capacity * RAMP_START
        last_held: Optional[float] = None

        def load(total: float) -> Dict[str, Any]:
            return self.run_load(key, cameras, total / cameras, self.mode.ramp_seconds, "ramp",
                                 frames_dir=frames_dir, name=name)

        for _ in range(self.mode.ramp_steps):
            rows.append(load(rate))
            if rows[-1]["held"]:
                last_held = rate
                rate *= RAMP_STEP
                continue
            if last_held is None:  # missed at the start: go down instead
                rate /= RAMP_STEP
                continue
            rows.append(load((last_held + rate) / 2))
            break
        return rows

    def overload(self, held: float) -> List[Dict[str, Any]]:
        total = held * OVERLOAD_FACTOR
        return [self.run_load("pyai", RAMP_CAMERAS, total / RAMP_CAMERAS, self.mode.overload_seconds, "overload",
                              options) for options in (None, *FRESH_OPTIONS)]

    def fixed_camera(self, frames_dir: Path) -> Dict[str, Any]:
        """pyai's labelImage on a fixed camera's sequence, the gate off then on. Each
        variant gets a fresh plugin process (the gate is read at its start), a probe
        load whose labelled/s is the capacity its ramp starts from, the ramp, and
        then pyaiStats() for the gate's counts per load (each load is its own rule,
        so its own call site)."""
        out: Dict[str, Any] = {}
        for variant, value in ekuiper_gate.VARIANTS:
            say(f"  gate {variant}: restarting kuiperd with {ekuiper_gate.GATE_ENV}={value} ...")
            left = self.host.restart_kuiperd({ekuiper_gate.GATE_ENV: value})
            if left:
                log.info("processes left after kuiperd stopped (killed): %s", left)
            name = f"gate_{variant}"
            rows = self.probe(frames_dir, name)
            rows += self.ramp("pyai", capacity_of(rows), ekuiper_gate.CAMERAS, frames_dir, name)
            stats = ekuiper_gate.pyai_stats(self.host, f"S{next(self.ids)}")
            self.collector.take()  # the stats rule's answer: no load's
            out[variant] = ekuiper_gate.variant_result(variant, value, rows, highest_held(rows), stats, self.cores)
        return out

    def probe(self, frames_dir: Path, name: str) -> List[Dict[str, Any]]:
        """The fixed camera's first loads: from PROBE_FPS, doubled while held."""
        rows: List[Dict[str, Any]] = []
        rate = ekuiper_gate.PROBE_FPS
        for _ in range(ekuiper_gate.PROBES):
            rows.append(self.run_load("pyai", ekuiper_gate.CAMERAS, rate, self.mode.seconds, "probe",
                                      frames_dir=frames_dir, name=name))
            if not rows[-1]["held"]:
                break
            rate *= 2
        return rows

    def variants(self, specs: Dict[str, Dict[str, str]]) -> Dict[str, List[Dict[str, Any]]]:
        """pyai's labelImage again under other ``PYAI_*`` settings, each a fresh plugin
        process (kuiperd restarted with them in its environment), rows named
        ``pyai_<variant>``: the old and the forced configs against the default, same run."""
        out: Dict[str, List[Dict[str, Any]]] = {}
        names = {k for env in specs.values() for k in env}
        for variant, env in specs.items():
            # Every name any variant sets: unset ("") unless this one sets it.
            full = {k: env.get(k, "") for k in names}
            say(f"  variant {variant}: restarting kuiperd with {env} ...")
            self.host.restart_kuiperd(full)
            name = f"pyai_{variant}"
            rows = [self.run_load("pyai", c, CAMERA_FPS, self.mode.seconds, "fixed", name=name)
                    for c in FIXED_CAMERAS]
            rows += self.ramp("pyai", capacity_of(rows), name=name)
            out[name] = rows
        if specs:
            self.host.restart_kuiperd({k: "" for k in names})
        return out

    def close(self) -> None:
        self.collector.close()


def kuiperd_counters(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """Deltas of the rule's metrics over the load: what the source received, what the
    operators dropped (``buffer full``) and the plugin's errors (the function's operator)."""
    def delta(k: str) -> int:
        a, b = after.get(k), before.get(k, 0)
        return int(a - b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else 0

    out: Dict[str, Any] = {"source_in": 0, "exceptions": {}, "records_in": {}, "records_out": {}}
    for k in after:
        if k.startswith("source_") and k.endswith("_records_in_total"):
            out["source_in"] += delta(k)
        if k.endswith("_exceptions_total") and delta(k):
            out["exceptions"][k[: -len("_exceptions_total")]] = delta(k)
        if k.endswith("_records_in_total"):
            out["records_in"][k[: -len("_records_in_total")]] = delta(k)
        if k.endswith("_records_out_total"):
            out["records_out"][k[: -len("_records_out_total")]] = delta(k)
    # eKuiper's own figure for the last tuple each operator processed (the function's
    # operator: the plugin call as kuiperd times it).
    out["process_latency_us"] = {k[: -len("_process_latency_us")]: v for k, v in after.items()
                                 if k.endswith("_process_latency_us")}
    out["last_exceptions"] = {k: str(v)[:200] for k, v in after.items()
                              if k.endswith("_last_exception") and v and v != before.get(k)}
    return out


def parse_variants(text: str) -> Dict[str, Dict[str, str]]:
    """'name:K=V+K=V;name:K=V' -> {name: {K: V}}."""
    out: Dict[str, Dict[str, str]] = {}
    for item in filter(None, (x.strip() for x in text.split(";"))):
        name, _, settings = item.partition(":")
        out[name.strip()] = dict(kv.split("=", 1) for kv in settings.split("+") if "=" in kv)
    return out


def capacity_of(rows: List[Dict[str, Any]]) -> float:
    return max((r["labelled_fps"] for r in rows), default=1.0)


def highest_held(rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    held = [r for r in rows if r["held"]]
    return max(held, key=lambda r: r["published_fps"]) if held else None


# pyai through the protocol alone: its default config, and one thread for everything
# (the CPU a frame costs when nothing is split: the cores-limit formula's numerator).
ALONE_VARIANTS = {"default": {}, "one_thread": {"PYAI_THREADS": "1", "PYAI_DECODE_THREADS": "1"}}


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its descendants (the plugin and its guardian)."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    return sum(ekuiper_host.cpu_seconds(p.pid) for p in procs)


def protocol_alone(host_python: Path, pyai_dir: Path, workdir: Path, calls: int,
                   extra_env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The bench's pyai row (bench/protocol/report.py): 720p through the stand-in host, the same
    installed plugin and interpreter kuiperd ran; frames/s = 1/p50; and the plugin's CPU
    (its process and the guardian) per call."""
    env = benchlib.PluginEnv(pyai_dir, [str(host_python)], workdir, how="kuiperd's install")
    env.specs = benchlib.bench_plugin_specs(pyai_dir)
    spec = dataclasses.replace(env.specs["pyai"], extra_env=dict(extra_env or {}))
    payload = benchlib.exec_request((benchlib.SAMPLES / FRAME).read_bytes())

    def body(run: benchlib.Running) -> Dict[str, Any]:
        # Warm both cores first (the bench's warm-up), then the timed calls back to back.
        benchlib.timed_plugin_calls(run.host, payload, 50, warmup=10)
        cpu0, busy0 = tree_cpu_seconds(run.pid), ekuiper_host.machine_cpu_seconds()
        t0 = time.perf_counter()
        xs = benchlib.timed_plugin_calls(run.host, payload, calls, warmup=0)
        wall = time.perf_counter() - t0
        cpu = tree_cpu_seconds(run.pid) - cpu0
        return {"samples": xs, "wall": wall, "cpu": cpu, "machine": ekuiper_host.machine_cpu_seconds() - busy0}

    got = benchlib.plugin_session(env, spec, benchlib.host_timeout_s(False), body, log=say)
    stats = benchlib.summarize(got["samples"])
    n = len(got["samples"])
    stats["sustained_fps"] = n / got["wall"]
    stats["env"] = dict(extra_env or {})
    stats["cpu_ms_per_frame"] = got["cpu"] * 1e3 / n
    # The stand-in host (this process) and everything else on the machine, per call.
    stats["machine_cpu_ms_per_frame"] = got["machine"] * 1e3 / n
    stats["machine_busy_share"] = got["machine"] / got["wall"] / (os.cpu_count() or 1)
    return stats


def cores_limit(res: Dict[str, Any], key: str, cores: int) -> Optional[Dict[str, Any]]:
    """What the cores allow rule ``key`` at its highest held rate: cores x 1000 / (pyai's
    one-thread CPU ms per frame through the protocol alone + kuiperd's and mosquitto's
    CPU ms per frame at that rate), every term from this run."""
    row = highest_held(res["loads"].get(key, []))
    one = res.get("protocol_alone_one_thread")
    if row is None or one is None:
        return None
    host_ms = row["cpu_ms_per_frame"]["kuiperd"] + row["cpu_ms_per_frame"]["mosquitto"]
    limit = cores * 1000.0 / (one["cpu_ms_per_frame"] + host_ms)
    # The same with only the cores left over by what is not the product during that
    # step: other users' jobs on this shared machine, the camera generator, the bench.
    share = row["cpu_share"]
    taken = sum(share.get(g, 0.0) for g in ("others", "cameras", "bench", "other_plugins")) * cores
    left = max(cores - taken, 0.0)
    limit_left = left * 1000.0 / (one["cpu_ms_per_frame"] + host_ms)
    return {"rule": key, "held_fps": row["published_fps"], "pyai_one_thread_cpu_ms": one["cpu_ms_per_frame"],
            "kuiperd_mosquitto_cpu_ms": host_ms, "limit_fps": limit, "ratio": row["published_fps"] / limit,
            "cores_left": left, "limit_left_fps": limit_left,
            "ratio_left": row["published_fps"] / limit_left if limit_left > 0 else None,
            "plugin_cpu_ms": row["cpu_ms_per_frame"]["plugin"]}


def targets(res: Dict[str, Any], cores: int) -> List[Dict[str, Any]]:
    out = []
    proto = res["protocol_alone"]["fps"]
    held = res["highest_held"]
    pyai = held.get("pyai")
    tut = held.get("tutorial")
    limits = {k: cores_limit(res, k, cores) for k in ("pyai", "labelImages4", "labelImages")}
    res["cores_limit"] = {k: v for k, v in limits.items() if v}
    for key, title in (("pyai", "pyai labelImage"), ("labelImages", "pyai labelImages CountWindow(8)")):
        lim = limits[key]
        if lim:
            out.append({"target": f"{title} highest held rate / what the cores allow",
                        "measured": f"{lim['ratio']:.2f}x ({lim['held_fps']:.1f} / {lim['limit_fps']:.1f} frames/s)",
                        "goal": ">= 0.85x", "ok": lim["ratio"] >= 0.85, "ratio": lim["ratio"]})
    if pyai is not None:
        x = pyai / proto
        out.append({"target": "pyai highest held rate through kuiperd / its protocol-alone frames/s",
                    "measured": f"{x:.2f}x ({pyai:.1f} / {proto:.1f} frames/s)", "goal": ">= 0.85x",
                    "ok": x >= 0.85, "ratio": x})
    lim = limits["pyai"]
    if lim:
        x = lim["plugin_cpu_ms"] / lim["pyai_one_thread_cpu_ms"]
        out.append({"target": "pyai CPU per frame inside kuiperd at the held rate / alone with one thread",
                    "measured": f"{x:.2f}x ({lim['plugin_cpu_ms']:.2f} / {lim['pyai_one_thread_cpu_ms']:.2f} ms)",
                    "goal": "<= 1.10x", "ok": x <= 1.10, "ratio": x})
    tut_tfl = held.get("tutorial_tflite")
    if pyai is not None and tut_tfl:
        x = pyai / tut_tfl
        out.append({"target": "pyai highest held rate / the tutorial plugin's as written (tflite_runtime)",
                    "measured": f"{x:.1f}x ({pyai:.1f} / {tut_tfl:.1f} frames/s)", "goal": ">= 12x",
                    "ok": x >= 12.0, "ratio": x})
    if pyai is not None and tut:
        x = pyai / tut
        out.append({"target": "(info) pyai highest held rate / the tutorial plugin's on LiteRT",
                    "measured": f"{x:.1f}x ({pyai:.1f} / {tut:.1f} frames/s)", "goal": "info",
                    "ok": True, "ratio": x})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short loads (5 s, ramp steps 4 s)")
    ap.add_argument("--plugins", default="ceiling,nofunc,pyai,labelImages4,labelImages,tutorial_tflite,tutorial,"
                                         f"{ekuiper_gate.GATE_KEY}",
                    help=f"which rules to load ({', '.join(RULES)}) and {ekuiper_gate.GATE_KEY}, the gate off/on "
                         "comparison (alone: written to <arch>-ekuiper-gate.json)")
    ap.add_argument("--no-overload", action="store_true")
    ap.add_argument("--pyai-variants", default="",
                    help="pyai's labelImage again under other settings, each a fresh plugin process, e.g. "
                         "'two:PYAI_THREADS=2+PYAI_DECODE_THREADS=2;one:PYAI_THREADS=1+PYAI_DECODE_THREADS=1'")
    ap.add_argument("--workdir", type=Path, help="keep the hosts' folders and logs here")
    ap.add_argument("--out-dir", type=Path, default=benchlib.RESULTS)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    keys = [k.strip() for k in args.plugins.split(",") if k.strip()]
    unknown = [k for k in keys if k not in RULES and k != ekuiper_gate.GATE_KEY]
    if unknown:
        ap.error(f"unknown --plugins {unknown}: pick from {', '.join([*RULES, ekuiper_gate.GATE_KEY])}")
    rule_keys = [k for k in keys if k in RULES]
    with_gate = ekuiper_gate.GATE_KEY in keys
    # The gate comparison alone must not overwrite the full bench's results file.
    gate_only = with_gate and not rule_keys
    assets = benchlib.ensure_assets()
    frame_path = assets["samples"] / FRAME
    tmp = None
    if args.workdir:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="pyai-bench-ekuiper-")
        workdir = Path(tmp.name)
    t_start = time.monotonic()
    res: Dict[str, Any] = {"schema": 1, "mode": mode_name,
                           "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "settings": {"frame": FRAME, "qos": QOS, "camera_fps": CAMERA_FPS,
                                        "fixed_cameras": list(FIXED_CAMERAS), "ramp_cameras": RAMP_CAMERAS,
                                        "ramp_start": RAMP_START, "ramp_step": RAMP_STEP, "held_labelled": HELD_LABELLED,
                                        "held_throughput": HELD_THROUGHPUT,
                                        "overload_factor": OVERLOAD_FACTOR, "fresh_options": list(FRESH_OPTIONS),
                                        "seconds": mode.seconds, "ramp_seconds": mode.ramp_seconds,
                                        "overload_seconds": mode.overload_seconds, "grace_s": mode.grace,
                                        "protocol_calls": mode.protocol_calls, "kuiperd": ekuiper_host.VERSION,
                                        "rules": {k: RULES[k].sql for k in rule_keys},
                                        "stream": ekuiper_host.STREAM_SQL}}
    try:
        frames_dir = workdir / "frames" / ekuiper_gate.GATE_KEY
        if with_gate:
            say(f"writing the fixed camera's frames to {frames_dir} ...")
            res["settings"][ekuiper_gate.GATE_KEY] = ekuiper_gate.settings(
                ekuiper_gate.write_frames(frames_dir, assets["samples"]))
        say(f"building the zips and starting mosquitto + kuiperd {ekuiper_host.VERSION} in {workdir} ...")
        pyai_zip = ekuiper_plugins.build_pyai_zip(workdir / "dist" / "pyai.zip")
        tutorial_zip = (ekuiper_plugins.build_tutorial_zip(workdir / "dist" / "tutorial.zip")
                        if "tutorial" in keys else None)
        tutorial_tfl_zip = (ekuiper_plugins.build_tutorial_zip(workdir / "dist" / "tutorialtfl.zip", tflite_runtime=True)
                            if "tutorial_tflite" in keys else None)
        ceiling_zip = (ekuiper_plugins.build_ceiling_zip(workdir / "dist" / "ceiling.zip")
                       if "ceiling" in keys else None)
        host = ekuiper_host.start_host(workdir, pyai_zip, tutorial_zip, tutorial_tfl_zip, ceiling_zip)
        res["install_seconds"] = host.install_seconds
        say(f"  installed: {', '.join(f'{k} {v:.1f} s' for k, v in host.install_seconds.items())}")
        loads: Dict[str, List[Dict[str, Any]]] = {}
        try:
            bench = Bench(host, mode, frame_path)
            try:
                say(ekuiper_report.header_line())
                for key in rule_keys:
                    rows = bench.fixed(key)
                    rows += bench.ramp(key, capacity_of(rows))
                    loads[key] = rows
                loads.update(bench.variants(parse_variants(args.pyai_variants)))
                if "pyai" in keys and not args.no_overload:
                    held = highest_held(loads["pyai"])
                    loads["overload"] = bench.overload(held["published_fps"] if held else capacity_of(loads["pyai"]))
                # Last: it restarts kuiperd, and leaves the gate on.
                if with_gate:
                    res[ekuiper_gate.GATE_KEY] = bench.fixed_camera(frames_dir)
            finally:
                bench.close()
        finally:
            left = host.stop()
            if left:
                log.info("processes left after kuiperd stopped (killed): %s", left)
        if not gate_only:
            res["loads"] = loads
            res["highest_held"] = {k: (highest_held(v) or {}).get("published_fps")
                                   for k, v in loads.items() if k != "overload"}
            say("kuiperd stopped; pyai through the protocol alone (stand-in host), same install ...")
            for variant, env in ALONE_VARIANTS.items():
                key = "protocol_alone" if variant == "default" else f"protocol_alone_{variant}"
                res[key] = protocol_alone(host.python, host.kuiperd.plugin_dir, workdir, mode.protocol_calls, env)
            res["targets"] = targets(res, os.cpu_count() or 1)
            res["sizing"] = ekuiper_report.sizing(res)
        res["machine"] = benchlib.machine_info()
        res["driver"] = {"python": platform.python_version(), "executable": os.path.basename(sys.executable)}
        res["bench_seconds"] = time.monotonic() - t_start
        stem = benchlib.results_stem(res["machine"]) + "-ekuiper"
        if gate_only:
            ekuiper_report.print_gate_report(res, say)
            if not args.no_save:
                benchlib.save_results(res, args.out_dir, stem + "-gate", ekuiper_report.write_gate_chart, say)
        else:
            ekuiper_report.print_report(res, say)
            if not args.no_save:
                benchlib.save_results(res, args.out_dir, stem, ekuiper_report.write_chart, say)
        say(f"bench-ekuiper took {time.monotonic() - t_start:.0f} s")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
