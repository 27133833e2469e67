"""The unchanged-frame gate through the plugin protocol: what it costs a changed frame,
what an unchanged frame costs, and a fixed camera's frames/s with and without it.

One run, the packaged plugin under the host stand-in, sessions interleaved by round
so a noisy phase of the machine hits every variant:

- ``off``: the plugin as installed (gate off, the default);
- ``on``: the same plugin with ``PYAI_SKIP_UNCHANGED=true`` (the default threshold);
- ``base`` (with ``--base REV``): the plugin built from an earlier commit, to show
  that the gate being off changes nothing measurable on today's path.

Frames (``bench/gate/gate_sequences.py``), at 720p and 1080p, each a camera JPEG with its
own noise and a pixel of jitter, so no two frames have the same bytes:

- changed: every frame a different scene from the one before. Only some are walked:
  after a changed frame the site backs off (1, 3, 7, 15 frames straight to the
  model), so this is what the gate costs a busy camera; its p50 against ``off``'s
  is that cost. What one walk that stops costs a changed frame is measured
  in-process (``check_in_process``);
- unchanged: one scene (the gate answers all but the first);
- fixed camera: 300 frames (150 at 1080p) of a camera on one scene, light slowly
  dimming, a cut to another scene every 100 (50): frames/s = frames / the sum of the
  calls' times, and the gated answers' top-1 against the ungated ones, frame by frame;
- all kinds (720p): the gate study's held-out kinds of scene (indoor, outdoor, low
  contrast, night, scenes the model is unsure of, a small moving object, a slow
  pan, a flickering light; ``gate_study.parts``), two scenes of 60 frames each, one
  kind after the other: frames/s with and without the gate, in all and per kind,
  top-1 agreement per kind (near ties forgiven: a class within 0.1 of the gate-off
  top-1; and strict: only its second, when the top-1 led by less than 0.1) and
  whether the gate's answers were the same in every round. Once for each held-out
  part: "all kinds" (ImageNet samples), "all kinds (held-out 2)" (scikit-image's
  photos; skipped without scikit-image), "all kinds (held-out 3)" and "all kinds
  (held-out 4)" (ImageNet samples no earlier part uses, each its own camera).

Writes ``bench/results/<arch>-gate-bench.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import benchlib  # noqa: E402
from bench.gate import gate_sequences as gs  # noqa: E402
from bench.gate.gate_sequences import Camera, Scene, SequenceSpec  # noqa: E402
from pyai.gate import NEAR_TIE  # noqa: E402  (the gate study's near tie, and the gate's)

# The all-kinds sequences, one per held-out part of the gate study: name -> that
# part, and (kind, first frame, frames) in order (filled when they are built).
ALL_KINDS = {"all kinds": "held-out", "all kinds (held-out 2)": "held-out 2", "all kinds (held-out 3)": "held-out 3",
             "all kinds (held-out 4)": "held-out 4"}
KIND_SEGMENTS: Dict[str, List[tuple]] = {}

PHOTOS = {"720p": ("cat_720p.jpg", "owl.jpg", "parrot.jpg"), "1080p": ("cat_1080p.jpg", "owl.jpg", "parrot.jpg")}
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def sequences(res: str, n: int, samples: Path) -> Dict[str, List[bytes]]:
    size = SIZES[res]
    cam = Camera(size=size, noise=3.0, quality=80, jitter=1)
    photos = PHOTOS[res]
    # Changed: one frame of each scene in turn.
    changed_spec = SequenceSpec("changed", tuple(Scene(photos[i % 3], 1) for i in range(n)), cam)
    unchanged_spec = SequenceSpec("unchanged", (Scene(photos[0], n),), cam)
    fixed_n = 300 if res == "720p" else 150
    out = {
        "changed": gs.all_frames(changed_spec, samples, seed=1),
        "unchanged": gs.all_frames(unchanged_spec, samples, seed=2),
        "fixed camera": gs.all_frames(gs.fixed_camera(size, photos, fixed_n // 3), samples, seed=3),
    }
    if res == "720p":
        out.update(all_kinds(samples))
    return out


def all_kinds(samples: Path) -> Dict[str, List[bytes]]:
    """Per held-out part of the study (ALL_KINDS): its kinds of scene, 2 scenes of
    60 frames a kind, in turn."""
    sys.path.insert(0, str(REPO / "models"))
    from fetch import samples_mirror  # noqa: E402

    from bench.gate import gate_study
    from pyai import Classifier

    assets = benchlib.ensure_assets()
    with Classifier(model=str(assets["model"]), labels=str(assets["labels"])) as clf:
        plan = gate_study.parts(clf, samples, samples_mirror(), quick=False)
    out: Dict[str, List[bytes]] = {}
    for name, part in ALL_KINDS.items():
        if not plan.get(part):
            continue  # held-out 2 needs scikit-image
        frames: List[bytes] = []
        KIND_SEGMENTS[name] = []
        for kind, item in plan[part].items():
            spec = item["spec"]
            spec = SequenceSpec(spec.name, spec.scenes[:2], spec.camera)
            got = gs.all_frames(spec, samples, seed=item["seed"])
            KIND_SEGMENTS[name].append((kind, len(frames), len(got)))
            frames += got
        out[name] = frames
    return out


def payloads(frames: Sequence[bytes]) -> List[bytes]:
    # The exact request the Go host sends (the frame as base64, the function meta last).
    return [benchlib.exec_request(f) for f in frames]


def session(env: benchlib.PluginEnv, spec: benchlib.PluginSpec, gate: bool, work: Dict[str, Dict[str, List[bytes]]],
            timeout_s: float) -> Dict[str, Dict[str, dict]]:
    """Every sequence once through one plugin process: per call seconds and top-1."""
    extra = {"PYAI_SKIP_UNCHANGED": "true" if gate else "0"}

    def body(run: benchlib.Running) -> Dict[str, Dict[str, dict]]:
        host = run.host
        out: Dict[str, Dict[str, dict]] = {}
        for res, seqs in work.items():
            warm = seqs["changed"][:20]
            for p in warm:  # warm-up: caches, XNNPACK's worker, the split decoder's learning
                benchlib.call(host, p)
            out[res] = {}
            for name, reqs in seqs.items():
                secs, top1, top2, leads, near = [], [], [], [], []
                for p in reqs:
                    result, dt = benchlib.call(host, p)
                    secs.append(dt)
                    # As gate_study.observe records full inference, for gate_study.agrees.
                    top1.append(result[0]["label"])
                    top2.append(result[1]["label"] if len(result) > 1 else None)
                    leads.append(result[0]["confidence"] - (result[1]["confidence"] if len(result) > 1 else 0.0))
                    near.append([r["label"] for r in result if r["confidence"] > result[0]["confidence"] - NEAR_TIE])
                out[res][name] = {"seconds": secs, "top1": top1, "top2": top2, "leads": leads, "near": near}
                # The next sequence must not start on this one's reference frame.
                benchlib.call(host, warm[0])
        return out

    spec = benchlib.PluginSpec(spec.key, spec.name, spec.folder, spec.title, extra_env=extra)
    return benchlib.plugin_session(env, spec, timeout_s, body)


def _p50(xs: Sequence[float]) -> float:
    return benchlib.quantile(sorted(xs), 0.5)


def check_cost(res: str, changed: Sequence[bytes], unchanged: Sequence[bytes]) -> Dict[str, float]:
    """In-process, p50 over the frames of three passes:

    - on changed frames (each a cut from the frame before), the gate's own work
      (header, the DC walk against the previous frame's signature, which stops in
      the first cell rows) against the frame's whole path (decode, resize, invoke,
      top-k);
    - on unchanged frames, the whole DC walk (what answers such a frame), on two
      cores and on one;
    - the changed sequence as a stream through ``Classifier.label``, each frame
      labelled with the gate off and on one after the other (in turn first), eight
      passes, each on a new call site: the ratio of the mean calls (what the gate
      costs a busy camera from its first frame, walks and back-off included), and
      the mean extra time of the frames sent straight to the model, of the whole
      walks and of the walks that stopped. Pairing frame by frame cancels the
      drift of this shared machine, which moves whole sessions by 5% and more.
    """
    import time

    from pyai import Classifier
    from pyai.decode import check, inspect
    from pyai.gate import DEFAULT_THRESHOLD, Gate, jpeg_signature

    assets = benchlib.ensure_assets()
    clf = Classifier(model=str(assets["model"]), labels=str(assets["labels"]))
    model = clf.model

    def box_of(header):
        return clf.signature_box(header.width, header.height)

    rule = Gate(DEFAULT_THRESHOLD)
    refs = [jpeg_signature(d, box_of(inspect(d))) for d in changed]
    still_ref = jpeg_signature(unchanged[0], box_of(inspect(unchanged[0])))
    gate_ms, full_ms, walk2, walk1 = [], [], [], []
    not_stopped = 0
    for _ in range(3):
        for i, data in enumerate(changed[1:], start=1):
            t0 = time.perf_counter()
            header = inspect(data)
            check(header, clf.limits)
            sig = jpeg_signature(data, box_of(header), rule.stopper(refs[i - 1]))
            t1 = time.perf_counter()
            if sig is not None:
                not_stopped += 1  # its first cell rows look alike: walked whole (not timed as a stop)
                continue
            frame = clf.decode_bytes(data, reuse=True, split=True, header=header)
            clf.fill(frame, model.input_slot(0))
            clf.results(model.run()[0])
            t2 = time.perf_counter()
            gate_ms.append(t1 - t0)
            full_ms.append(t2 - t1)
        for data in unchanged[1:]:
            box = box_of(inspect(data))
            for threads, out in ((2, walk2), (1, walk1)):
                t0 = time.perf_counter()
                assert jpeg_signature(data, box, rule.stopper(still_ref), threads) is not None
                out.append(time.perf_counter() - t0)
    gated = Classifier(model=str(assets["model"]), labels=str(assets["labels"]), skip_unchanged=DEFAULT_THRESHOLD)
    extra: Dict[str, List[float]] = {"skipped": [], "walked": [], "stopped": []}
    t_off = t_on = 0.0
    for p in range(8):
        for i, data in enumerate(changed):
            stats0 = gated.gate_stats()
            t = {}
            for key in (("off", "on") if (i + p) % 2 == 0 else ("on", "off")):
                c = clf if key == "off" else gated
                t0 = time.perf_counter()
                c.label(data, site=f"stream-{p}")
                t[key] = time.perf_counter() - t0
            stats1 = gated.gate_stats()
            if stats1["walks"]["stopped"] > stats0["walks"]["stopped"]:
                kind = "stopped"
            elif stats1["checked"] > stats0["checked"]:
                kind = "walked"
            else:
                kind = "skipped"
            extra[kind].append(t["on"] - t["off"])
            t_off += t["off"]
            t_on += t["on"]
    gated.close()
    clf.close()
    c, f = _p50(gate_ms) * 1e3, _p50(full_ms) * 1e3
    n = sum(len(v) for v in extra.values())
    return {"check_ms": c, "full_ms": f, "share": c / f, "changed_not_stopped": not_stopped,
            "walk_ms": _p50(walk2) * 1e3, "walk_one_core_ms": _p50(walk1) * 1e3,
            "stream_cost": t_on / t_off - 1, "stream_call_ms": t_off / n * 1e3,
            "stream_share": {k: len(v) / n for k, v in extra.items()},
            "stream_extra_ms": {k: (sum(v) / len(v) * 1e3 if v else 0.0) for k, v in extra.items()}}


def kinds_report(runs: Dict[str, List[dict]], res: str, rounds: int, seq: str) -> Dict[str, object]:
    """An all-kinds sequence ``seq``: frames/s off and on and their ratio (median of the
    rounds), per kind the ratio of the summed call times and the top-1 agreement
    (near ties forgiven) against the first gate-off round, and whether every gate-on
    round gave the same answers."""
    def seconds(key: str, i: int, lo: int = 0, n: int | None = None) -> float:
        xs = runs[key][i][res][seq]["seconds"]
        return sum(xs[lo:lo + n] if n is not None else xs)

    total = len(runs["off"][0][res][seq]["seconds"])
    speedups = sorted(seconds("off", i) / seconds("on", i) for i in range(rounds))
    off = runs["off"][0][res][seq]
    on_answers = [run[res][seq]["top1"] for run in runs["on"]]
    from bench.gate.gate_study import agrees

    kinds = {}
    for kind, lo, n in KIND_SEGMENTS[seq]:
        ratios = sorted(seconds("off", i, lo, n) / seconds("on", i, lo, n) for i in range(rounds))
        agree = min(sum(agrees(off, j, ans[j]) for j in range(lo, lo + n)) / n for ans in on_answers)
        # Strict (the target's): the gate-off top-1, or its second when that led by < NEAR_TIE.
        strict = min(sum(agrees(off, j, ans[j], strict=True) for j in range(lo, lo + n)) / n for ans in on_answers)
        kinds[kind] = {"frames": n, "speedup": ratios[len(ratios) // 2], "top1_agreement": agree,
                       "top1_agreement_strict": strict}
    return {"frames": total, "speedup": speedups[len(speedups) // 2],
            "off_fps": total / sorted(seconds("off", i) for i in range(rounds))[rounds // 2],
            "on_fps": total / sorted(seconds("on", i) for i in range(rounds))[rounds // 2],
            "same_every_round": all(a == on_answers[0] for a in on_answers), "kinds": kinds}


def base_zip(rev: str, dest: Path) -> Path:
    """dist/pyai.zip built from commit ``rev`` of this repository."""
    tree = dest / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "pyai.plugin.package"], cwd=tree, check=True, capture_output=True)
    return tree / "dist" / "pyai.zip"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=120, help="frames of the changed and unchanged sequences")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base", metavar="REV", help="also run the plugin built from this commit (gate-off check)")
    ap.add_argument("--python", help="run the plugin with this interpreter instead of installing it with install.sh")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)

    assets = benchlib.ensure_assets()
    work_frames = {res: sequences(res, args.calls, assets["samples"]) for res in SIZES}
    work = {res: {k: payloads(v) for k, v in seqs.items()} for res, seqs in work_frames.items()}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pyai-gate-bench-"))
    python = [args.python] if args.python else None
    env = benchlib.prepare_env(workdir / "head", python)
    variants = {"off": (env, False), "on": (env, True)}
    if args.base:
        base_env = benchlib.prepare_env(workdir / "base", python, zip_path=base_zip(args.base, workdir / "base-src"))
        variants["base"] = (base_env, False)
    timeout_s = benchlib.host_timeout_s(False)

    runs: Dict[str, List[dict]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for key, (e, gate) in variants.items():
            print(f"round {r + 1}/{args.rounds}: {key}", flush=True)
            runs[key].append(session(e, e.specs["pyai"], gate, work, timeout_s))

    def pooled(key: str, res: str, seq: str) -> List[float]:
        return [s for run in runs[key] for s in run[res][seq]["seconds"]]

    report: Dict[str, dict] = {"machine": benchlib.machine_info(), "rounds": args.rounds, "calls": args.calls,
                               "base": args.base, "resolutions": {}}
    for res in SIZES:
        row: Dict[str, object] = {}
        for seq in ("changed", "unchanged"):
            row[seq] = {k: benchlib.summarize(pooled(k, res, seq)) for k in variants}
            for k in variants:
                row[seq][k]["p50_per_round"] = [_p50(run[res][seq]["seconds"]) * 1e3 for run in runs[k]]
        # Ratios of sessions run back to back (round by round), then their median: the
        # machine's load moves between sessions more than the gate's own cost.
        def ratio(a: str, b: str, seq: str, stat=_p50) -> float:
            rs = sorted(stat(runs[a][i][res][seq]["seconds"]) / stat(runs[b][i][res][seq]["seconds"])
                        for i in range(args.rounds))
            return rs[len(rs) // 2]

        row["changed_cost"] = ratio("on", "off", "changed") - 1
        # The mean carries the walks (one frame in up to 17 of a busy camera) that the
        # median of the frames does not see.
        row["changed_cost_mean"] = ratio("on", "off", "changed", lambda xs: sum(xs) / len(xs)) - 1
        row["unchanged_share_of_full"] = ratio("on", "off", "unchanged")
        row["check_in_process"] = check_cost(res, work_frames[res]["changed"], work_frames[res]["unchanged"])
        if "base" in variants:
            row["off_vs_base"] = ratio("off", "base", "changed") - 1
        fixed = {}
        for k in variants:
            fps = [len(run[res]["fixed camera"]["seconds"]) / sum(run[res]["fixed camera"]["seconds"]) for run in runs[k]]
            fixed[k] = {"fps_per_round": fps, "fps": sorted(fps)[len(fps) // 2]}
        fixed["speedup_per_round"] = [
            (len(a[res]["fixed camera"]["seconds"]) / sum(a[res]["fixed camera"]["seconds"]))
            / (len(b[res]["fixed camera"]["seconds"]) / sum(b[res]["fixed camera"]["seconds"]))
            for a, b in zip(runs["on"], runs["off"])
        ]
        off_top1 = runs["off"][0][res]["fixed camera"]["top1"]
        agree = [sum(a == b for a, b in zip(run[res]["fixed camera"]["top1"], off_top1)) / len(off_top1)
                 for run in runs["on"]]
        fixed["speedup"] = sorted(fixed["speedup_per_round"])[len(fixed["speedup_per_round"]) // 2]
        fixed["top1_agreement"] = min(agree)
        row["fixed camera"] = fixed
        for seq in ALL_KINDS:
            if seq in work[res]:
                row[seq] = kinds_report(runs, res, args.rounds, seq)
        report["resolutions"][res] = row

        print(f"\n{res}: p50 ms per call through the protocol")
        print("  sequence    " + "  ".join(f"{k:>8}" for k in variants))
        for seq in ("changed", "unchanged"):
            print(f"  {seq:10s}  " + "  ".join(f"{row[seq][k]['p50']:8.2f}" for k in variants)
                  + "   per round: " + "; ".join(
                      f"{k} " + " ".join(f"{x:.2f}" for x in row[seq][k]["p50_per_round"]) for k in variants))
        cip = row["check_in_process"]
        print(f"  changed frames: {row['changed_cost']:+.1%} p50, {row['changed_cost_mean']:+.1%} mean, through the "
              f"protocol (median of the rounds' ratios); in-process a check that stops takes {cip['check_ms']:.3f} ms, "
              f"the frame's whole path {cip['full_ms']:.2f} ms ({cip['share']:.1%})")
        sh, ex = cip["stream_share"], cip["stream_extra_ms"]
        print(f"  in-process, the changed sequence as a stream (frame by frame, off and on in turn): "
              f"{cip['stream_cost']:+.1%} of the mean call ({cip['stream_call_ms']:.2f} ms); extra ms: "
              + ", ".join(f"{k} {ex[k]:+.3f} ({sh[k]:.0%} of frames)" for k in ("skipped", "walked", "stopped")))
        print(f"  the whole DC walk of an unchanged frame: {cip['walk_ms']:.3f} ms on two cores, "
              f"{cip['walk_one_core_ms']:.3f} ms on one")
        print(f"  unchanged frame: {row['unchanged_share_of_full']:.0%} of a full call")
        if "off_vs_base" in row:
            print(f"  gate off vs {args.base}: {row['off_vs_base']:+.1%}")
        print(f"  fixed camera: {fixed['off']['fps']:.0f} frames/s without the gate, {fixed['on']['fps']:.0f} with "
              f"({fixed['speedup']:.2f}x), top-1 agreement {fixed['top1_agreement']:.2%}")
        for seq in (s for s in ALL_KINDS if s in row):
            ak = row[seq]
            print(f"  {seq}: {ak['off_fps']:.0f} frames/s without the gate, {ak['on_fps']:.0f} with "
                  f"({ak['speedup']:.2f}x); the gate's answers the same in every round: {ak['same_every_round']}")
            for kind, k in ak["kinds"].items():
                print(f"    {kind:22s} {k['speedup']:5.2f}x  top-1 agreement {k['top1_agreement']:.2%}, "
                      f"strict {k['top1_agreement_strict']:.2%}")

    if not args.no_save:
        out = benchlib.RESULTS / f"{benchlib.results_stem(report['machine'])}-gate-bench.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
