"""The fixed camera of ``bench/ekuiper/ekuiper_bench.py`` (``--plugins fixed_camera``): pyai's
labelImage rule on a fixed camera's frames through the real host, with the
unchanged-frame gate off and on.

The frames are ``gate_sequences.fixed_camera``'s (the gate bench's fixed-camera row):
720p camera JPEGs of one scene with sensor noise, a pixel of jitter and slowly
dimming light, a cut to another scene every 100 frames, so no two frames have the
same bytes. The camera generator cycles through them in order (``--frames-dir``).

**One camera.** The gate keeps one reference frame per call site (eKuiper's rule,
operator and instance), so a fixed camera is one camera per rule; eight cameras on
the one rule would interleave eight views and every frame would be compared with
another camera's. The rate is ramped on that one camera.

**Switching the gate.** pyai reads ``skip_unchanged`` once, at the plugin process's
start, from its folder's ``pyai_config.json`` overridden by ``PYAI_*`` variables
(pyai/config.py ``load_config``). kuiperd starts the plugin process with its own
environment, so each variant restarts kuiperd with ``PYAI_SKIP_UNCHANGED`` set
(``false``, then ``true``: the default threshold): the installed folder is never
touched, and each variant starts from a fresh plugin process.

**Counts.** ``pyaiStats()`` is called through a rule of its own after each variant's
loads; the gate's counters are per call site, and every load is its own rule, so
each load gets its own checked / reused / run (its warm-up frames included, a few
of the bench's single file). Off, the answer has no ``gate``: that is checked too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.gate import gate_sequences
from bench.ekuiper import ekuiper_calls
from bench.ekuiper.ekuiper_host import RULES, Host

GATE_KEY = "fixed_camera"
GATE_ENV = "PYAI_SKIP_UNCHANGED"
VARIANTS = (("off", "false"), ("on", "true"))
CAMERAS = 1
SEED = 3
# The first loads of each variant, from PROBE_FPS doubled while held (at most
# PROBES): the last is offered more than the variant takes, so its labelled/s is
# the capacity the ramp starts from. 320 is above what pyai takes here without
# the gate (~220/s on 2 cores); with it, more than twice that.
PROBE_FPS = 320.0
PROBES = 3
COUNTS = ("checked", "reused", "run")


def write_frames(folder: Path, samples: Path) -> Dict[str, Any]:
    """The sequence as numbered files (the generator sends them in name order): the
    gate bench's fixed camera, as ``gate_sequences.fixed_camera`` makes it."""
    spec = gate_sequences.fixed_camera()
    folder.mkdir(parents=True, exist_ok=True)
    sizes = []
    for i, data in enumerate(gate_sequences.frames(spec, samples, SEED)):
        (folder / f"{i:05d}.jpg").write_bytes(data)
        sizes.append(len(data))
    return {"frames": len(sizes), "size": list(spec.camera.size), "photos": [s.photo for s in spec.scenes],
            "per_scene": spec.scenes[0].frames, "seed": SEED,
            "camera": dataclasses.asdict(spec.camera), "mean_bytes": sum(sizes) / len(sizes)}


def settings(frames: Dict[str, Any]) -> Dict[str, Any]:
    return {"sequence": frames, "cameras": CAMERAS, "probe_fps": PROBE_FPS, "probes": PROBES, "rule": RULES["pyai"].sql,
            "variants": {v: {GATE_ENV: value} for v, value in VARIANTS}}


def pyai_stats(host: Host, tag: str) -> Optional[Dict[str, Any]]:
    """``pyaiStats()`` of the running plugin process through a rule of its own, which
    no load's frame reaches (ekuiper_calls.StatsProbe); None if no answer."""
    probe = ekuiper_calls.StatsProbe(host, tag)
    try:
        return probe.snapshot()
    finally:
        probe.close()


def site_counts(stats: Optional[Dict[str, Any]], rule_id: str) -> Optional[Dict[str, int]]:
    """The gate's counts at one rule's call sites (``ruleId/opId/instanceId/funcId``)."""
    gate = (stats or {}).get("gate")
    if not gate:
        return None
    sites = [c for name, c in gate.get("sites", {}).items() if name.split("/")[0] == rule_id]
    return {k: sum(int(c.get(k, 0)) for c in sites) for k in COUNTS}


def variant_result(variant: str, value: str, rows: List[Dict[str, Any]], best: Optional[Dict[str, Any]],
                   stats: Optional[Dict[str, Any]], cores: int) -> Dict[str, Any]:
    """One variant's loads (each with its gate counts) and its summary at the highest
    rate held, with the plugin's CPU per frame (the variants hold different rates).
    Raises when pyaiStats() shows the gate in the wrong state: a comparison of two
    equal plugins would be reported as one of the gate."""
    gate = (stats or {}).get("gate")
    if stats is not None and bool(gate) != (variant == "on"):
        raise RuntimeError(f"gate {variant} ({GATE_ENV}={value}) but pyaiStats() says gate={gate!r}: the plugin "
                           "process did not get kuiperd's environment")
    for r in rows:
        r["gate"] = site_counts(stats, r["rule_id"])
    summary: Dict[str, Any] = {"highest_held_fps": None}
    if best is not None:
        summary = {"highest_held_fps": best["published_fps"], "tag": best["tag"],
                   "latency_ms": {k: best["latency_ms"][k] for k in ("p50", "p99")},
                   "cpu_share": {k: best["cpu_share"][k] for k in ("plugin", "kuiperd")},
                   "plugin_cpu_ms_per_frame": best["cpu_ms_per_frame"]["plugin"],
                   "gate": best["gate"]}
    totals = {k: gate.get(k) for k in ("threshold", "min_margin", *COUNTS)} if gate else None
    return {"env": {GATE_ENV: value}, "verified": stats is not None, "summary": summary, "gate_totals": totals,
            "loads": rows, "pyai_stats": stats}
