"""Table and chart of ``bench/ekuiper/ekuiper_bench.py``'s results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

TITLES = {"ceiling": "constant-reply plugin (host ceiling)", "nofunc": "rule with no function",
          "pyai": "pyai labelImage", "labelImages": "pyai labelImages CountWindow(8)",
          "labelImages4": "pyai labelImages CountWindow(4)",
          "tutorial": "tutorial plugin on LiteRT", "tutorial_tflite": "tutorial plugin as written",
          "overload": "pyai overloaded"}
COLORS = {"ceiling": "tab:gray", "nofunc": "k", "labelImages4": "tab:cyan", "pyai": "tab:green", "labelImages": "tab:blue", "tutorial": "tab:orange", "tutorial_tflite": "tab:red"}
GATE_COLORS = {"off": "tab:gray", "on": "tab:green"}


# CPU ms per labelled frame, per process group (utime+stime from /proc); "others" is
# the rest of the machine's busy time (/proc/stat) over the step: other users' jobs.
CPU_GROUPS = (("kuiperd", "kuiperd"), ("plugin", "plugin"), ("mosquitto", "mosq"), ("cameras", "gen"),
              ("bench", "bench"), ("others", "others"))


def header_line() -> str:
    return (f"  {'rule':14s} {'phase':8s} {'cams':>4s} {'offered':>8s} {'sent/s':>7s} {'labelled/s':>10s} "
            f"{'p50 ms':>8s} {'p99 ms':>8s} {'lost':>6s} {'held':>4s} | CPU ms/frame: "
            + " ".join(f"{short:>7s}" for _, short in CPU_GROUPS)
            + f" | {'busy':>5s} {'kuiperd RSS':>11s}  options")


def row_line(r: Dict[str, Any]) -> str:
    lat = r["latency_ms"]
    ms = r.get("cpu_ms_per_frame", {})
    busy = r["cpu_share"].get("machine", float("nan"))
    opts = ",".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
    return (f"  {r['plugin']:14s} {r['phase']:8s} {r['cameras']:4d} {r['offered_fps']:8.1f} {r['published_fps']:7.1f} "
            f"{r['labelled_fps']:10.1f} {lat['p50']:8.1f} {lat['p99']:8.1f} {r['lost']:6d} "
            f"{'yes' if r['held'] else 'NO':>4s} |               "
            + " ".join(f"{ms.get(g, float('nan')):7.2f}" for g, _ in CPU_GROUPS)
            + f" | {busy * 100:4.0f}% {r['rss_mb']['peak'].get('kuiperd', 0):8.0f} MB  {opts}")


def calls_line(c: Dict[str, Any]) -> str:
    """The serial call cycle while the cameras published (ekuiper_calls.cycle)."""
    return (f"  {'':14s} while publishing: {c['calls']} calls, in pyai {c['call_ms']:.2f} ms, reply to kuiperd's "
            f"next request {c['between_ms']:.2f} ms: a cycle of {c['cycle_ms']:.2f} ms "
            f"({1000.0 / c['cycle_ms']:.1f} calls/s at most)")


def loss_note(r: Dict[str, Any]) -> str:
    k = r["kuiperd"]
    drops = sum(v for name, v in k["exceptions"].items() if "project" not in name)
    plugin_err = sum(v for name, v in k["exceptions"].items() if "project" in name)
    not_received = r["published"] - k["source_in"]
    return (f"lost {r['lost']}: not received by kuiperd {not_received}, dropped by kuiperd buffers {drops}, "
            f"plugin errors {plugin_err}, the rest queued at the end / in a partial window")


def _banner(res: Dict[str, Any], title: str, say: Callable[[str], None]) -> None:
    m = res["machine"]
    say("")
    say("=" * 110)
    say(title)
    say(f"machine: {m['arch']} | {m['cpu']} | {m['cores']} cores | {m['os']} | python {m['python']}")


def print_report(res: Dict[str, Any], say: Callable[[str], None]) -> None:
    s = res["settings"]
    _banner(res, f"pyai through kuiperd {s['kuiperd']} + mosquitto, {res['mode']} mode, {res['created']}", say)
    say(f"frames: {s['frame']} on one topic per frame, QoS {s['qos']}; fixed loads {s['seconds']} s, "
        f"ramp steps {s['ramp_seconds']} s ({s['ramp_cameras']} cameras), grace {s['grace_s']} s")
    say("CPU ms per frame labelled (utime+stime over the publishing window): kuiperd, the rule's plugin "
        "(guardian included), mosquitto, the camera generator, the bench, others = the rest of the machine "
        "(/proc/stat); busy = the whole machine's busy share; RSS = kuiperd's peak during the load")
    say(header_line())
    for key, rows in res["loads"].items():
        for r in rows:
            say(row_line(r))
        say("")
    ov = res["loads"].get("overload")
    if ov:
        say("overload (pyai, 1.5x its highest held rate):")
        for r in ov:
            say(f"  {','.join(f'{k}={v}' for k, v in r['options'].items()) or 'defaults':16s} {loss_note(r)}")
    pa = res["protocol_alone"]
    for key, title in (("protocol_alone", "default config"), ("protocol_alone_one_thread", "one thread")):
        pa = res.get(key)
        if pa:
            say(f"pyai through the protocol alone ({title}; stand-in host, 720p, same install): p50 {pa['p50']:.2f} ms, "
                f"p99 {pa['p99']:.2f} ms -> {pa['fps']:.1f} frames/s (1/p50; back to back {pa['sustained_fps']:.1f}/s); "
                f"plugin CPU {pa.get('cpu_ms_per_frame', float('nan')):.2f} ms a frame; "
                f"machine {pa.get('machine_busy_share', float('nan')) * 100:.0f}% busy")
    for key, lim in res.get("cores_limit", {}).items():
        say(f"what the cores allow {TITLES.get(key, key)}: {res['machine']['cores']} x 1000 / "
            f"({lim['pyai_one_thread_cpu_ms']:.2f} pyai one thread + {lim['kuiperd_mosquitto_cpu_ms']:.2f} kuiperd and "
            f"mosquitto) = {lim['limit_fps']:.1f} frames/s; held {lim['held_fps']:.1f} = {lim['ratio']:.2f}x; "
            f"plugin CPU there {lim['plugin_cpu_ms']:.2f} ms a frame; with the {lim.get('cores_left', 0):.2f} cores "
            f"left by other jobs, the generator and the bench: {lim.get('limit_left_fps', 0):.1f} frames/s, held "
            f"{lim.get('ratio_left') or 0:.2f}x of that")
    say("highest held rate: " + ", ".join(f"{TITLES.get(k, k)} {v:.1f} frames/s" if v else f"{TITLES.get(k, k)} none"
                                          for k, v in res["highest_held"].items()))
    say("targets" + ("" if res["mode"] == "full" else "  (quick mode: short loads; judge from a full run)"))
    for t in res["targets"]:
        say(f"  {'MET ' if t['ok'] else 'MISS'}  {t['target']:70s} {t['measured']:34s} goal {t['goal']}")
    if res.get("fixed_camera"):
        for line in gate_lines(res):
            say(line)
    for line in sizing_lines(res):
        say(line)
    say("=" * 110)


SIZING_FPS = (30, 15, 5)


def _held_row(rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    held = [r for r in rows if r["held"]]
    return max(held, key=lambda r: r["published_fps"]) if held else None


def sizing(res: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Cameras one kuiperd + pyai holds on this machine, per way of running it: its
    highest held rate / the camera's fps, with the CPU ms per frame of each part there."""
    out = []
    picks = [(k, TITLES.get(k, k), rows) for k, rows in res.get("loads", {}).items()
             if k in ("pyai", "labelImages4", "labelImages")]
    for variant, v in (res.get("fixed_camera") or {}).items():
        picks.append((f"fixed_camera_{variant}", f"pyai labelImage, a fixed camera, skip_unchanged {variant}",
                      v["loads"]))
    for key, title, rows in picks:
        row = _held_row(rows)
        if row is None:
            continue
        ms = row["cpu_ms_per_frame"]
        out.append({"key": key, "title": title, "held_fps": row["published_fps"],
                    "p50_ms": row["latency_ms"]["p50"], "p99_ms": row["latency_ms"]["p99"],
                    "cpu_ms": {g: ms[g] for g in ("plugin", "kuiperd", "mosquitto")},
                    "cameras": {fps: int(row["published_fps"] // fps) for fps in SIZING_FPS}})
    return out


def sizing_lines(res: Dict[str, Any]) -> List[str]:
    rows = sizing(res)
    if not rows:
        return []
    out = ["sizing: 720p cameras one kuiperd + pyai holds here (highest held rate / camera fps), and the CPU ms "
           "a frame costs each part there (for your box: cameras = cores x 1000 x 0.85 / (fps x the sum))",
           f"  {'how':60s} {'held/s':>7s} {'p50':>6s} {'p99':>6s} {'plugin':>7s} {'kuiperd':>7s} {'mosq':>5s} "
           + " ".join(f"{f'@{fps}fps':>6s}" for fps in SIZING_FPS)]
    for r in rows:
        c = r["cpu_ms"]
        out.append(f"  {r['title']:60s} {r['held_fps']:7.1f} {r['p50_ms']:6.1f} {r['p99_ms']:6.1f} {c['plugin']:7.2f} "
                   f"{c['kuiperd']:7.2f} {c['mosquitto']:5.2f} "
                   + " ".join(f"{r['cameras'][fps]:6d}" for fps in SIZING_FPS))
    return out


def _count(gate: Optional[Dict[str, Any]], key: str) -> str:
    return f"{gate[key]:d}" if gate else "-"


def gate_lines(res: Dict[str, Any]) -> List[str]:
    """The fixed camera's table: each variant at its highest held rate."""
    s = res["settings"]["fixed_camera"]
    seq = s["sequence"]
    out = [f"fixed camera: pyai labelImage, {s['cameras']} camera cycling {seq['frames']} frames of "
           f"{seq['size'][0]}x{seq['size'][1]} ({len(seq['photos'])} scenes x {seq['per_scene']}, "
           f"mean {seq['mean_bytes'] / 1024:.0f} KB), unchanged-frame gate off / on (PYAI_SKIP_UNCHANGED)",
           "  at the highest held rate: CPU of the whole machine, the plugin's CPU per frame, the gate's counts "
           "at that load's rule, and over the plugin process (all its loads)",
           f"  {'gate':4s} {'held/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'plugin':>7s} {'kuiperd':>7s} "
           f"{'ms/frame':>8s} {'checked':>8s} {'reused':>7s} {'run':>6s}   "
           f"{'all: checked':>12s} {'reused':>7s} {'run':>6s}"]
    for variant, v in res["fixed_camera"].items():
        b = v["summary"]
        tot = v["gate_totals"]
        if b["highest_held_fps"] is None:
            out.append(f"  {variant:4s} {'none':>7s}")
            continue
        lat, cpu, g = b["latency_ms"], b["cpu_share"], b["gate"]
        out.append(f"  {variant:4s} {b['highest_held_fps']:7.1f} {lat['p50']:7.1f} {lat['p99']:7.1f} "
                   f"{cpu['plugin'] * 100:6.1f}% {cpu['kuiperd'] * 100:6.1f}% {b['plugin_cpu_ms_per_frame']:8.2f} "
                   f"{_count(g, 'checked'):>8s} {_count(g, 'reused'):>7s} {_count(g, 'run'):>6s}   "
                   f"{_count(tot, 'checked'):>12s} {_count(tot, 'reused'):>7s} {_count(tot, 'run'):>6s}")
    unverified = [k for k, v in res["fixed_camera"].items() if not v["verified"]]
    if unverified:
        out.append(f"  (no pyaiStats() answer for {', '.join(unverified)}: the gate's state is not confirmed)")
    return out


def print_gate_report(res: Dict[str, Any], say: Callable[[str], None]) -> None:
    """The report of a run of the fixed camera alone: every load, then the table."""
    s = res["settings"]
    _banner(res, f"pyai through kuiperd {s['kuiperd']} + mosquitto: the fixed camera, {res['mode']} mode, "
            f"{res['created']}", say)
    g = s["fixed_camera"]
    say(f"QoS {s['qos']}; probe loads of {s['seconds']} s from {g['probe_fps']:.0f} frames/s, doubled while held "
        f"(at most {g['probes']}), then ramp steps of {s['ramp_seconds']} s; grace {s['grace_s']} s")
    say(header_line())
    for v in res["fixed_camera"].values():
        for r in v["loads"]:
            say(row_line(r))
        say("")
    for line in gate_lines(res):
        say(line)
    say("=" * 110)


def write_chart(res: Dict[str, Any], path: Path) -> Optional[str]:
    import matplotlib.pyplot as plt  # benchlib.save_results set the backend
    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(15, 11))
    top = 1.0
    for key, rows in res["loads"].items():
        if key in ("overload", "ceiling", "nofunc") or not rows:
            continue  # the ceilings have a panel of their own (their rates would flatten these)
        rows = sorted(rows, key=lambda r: r["published_fps"])
        xs = [r["published_fps"] for r in rows]
        top = max(top, *xs)
        c = COLORS.get(key, "k")
        ax1.plot(xs, [r["labelled_fps"] for r in rows], "o-", color=c, label=TITLES.get(key, key))
        for r in rows:
            if not r["held"]:
                ax1.plot(r["published_fps"], r["labelled_fps"], "x", color="k", ms=9)
        ax2.plot(xs, [r["latency_ms"]["p50"] for r in rows], "o-", color=c, label=f"{TITLES.get(key, key)} p50")
        ax2.plot(xs, [r["latency_ms"]["p99"] for r in rows], "s--", color=c, alpha=0.6, label=f"{TITLES.get(key, key)} p99")
        held = res["highest_held"].get(key)
        if held:
            ax1.axvline(held, color=c, ls=":", lw=1)
    ax1.plot([0, top], [0, top], color="gray", lw=0.8, label="labelled = offered")
    pa = res["protocol_alone"]["fps"]
    ax1.axhline(pa, color="tab:green", ls="--", lw=1, label=f"pyai, protocol alone (1/p50) {pa:.0f}/s")
    ax1.axhline(0.85 * pa, color="tab:olive", ls=":", lw=1, label="0.85x of that (target)")
    ax1.set_xlabel("offered, frames/s (published)")
    ax1.set_ylabel("labelled, frames/s (results received while publishing)")
    ax1.set_title("throughput through kuiperd (x: not held; dotted: highest held)")
    ax1.legend(fontsize=7)
    ax1.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_xlabel("offered, frames/s")
    ax2.set_ylabel("publish -> result latency, ms (log)")
    ax2.set_title("latency vs offered rate")
    ax2.legend(fontsize=6)
    ax2.grid(True, which="both", alpha=0.3)
    ov = res["loads"].get("overload") or []
    if ov:
        names = [",".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults" for r in ov]
        xs = range(len(ov))
        ax3.bar([x - 0.2 for x in xs], [r["latency_ms"]["p50"] for r in ov], 0.4, label="latency p50, ms")
        ax3.bar([x + 0.2 for x in xs], [r["latency_ms"]["p99"] for r in ov], 0.4, label="latency p99, ms")
        for x, r in zip(xs, ov):
            ax3.annotate(f"lost {r['lost']}/{r['published']}\nkuiperd RSS {r['rss_mb']['peak'].get('kuiperd', 0):.0f} MB",
                         (x, r["latency_ms"]["p99"]), ha="center", va="bottom", fontsize=8)
        ax3.set_xticks(list(xs))
        ax3.set_xticklabels(names)
        ax3.set_yscale("log")
        ax3.set_title(f"pyai at {ov[0]['published_fps']:.0f} frames/s offered (1.5x its highest held)")
        ax3.legend(fontsize=7)
    else:
        ax3.axis("off")
    ceilings_panel(res, ax4)
    m = res["machine"]
    fig.suptitle(f"pyai through kuiperd {res['settings']['kuiperd']} + mosquitto, 720p JPEG cameras: {m['arch']}, "
                 f"{m['cpu']}, {m['cores']} cores, {res['mode']} mode", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def ceilings_panel(res: Dict[str, Any], ax: Any) -> None:
    """pyai's highest held rates against the host's two ceilings, what the cores allow
    and its protocol-alone rate, with each one's CPU ms per frame."""
    held = res.get("highest_held", {})
    bars = [(TITLES["nofunc"], held.get("nofunc"), "k"), (TITLES["ceiling"], held.get("ceiling"), "tab:gray")]
    lim = res.get("cores_limit", {})
    for key in ("pyai", "labelImages4", "labelImages"):
        if key in lim:
            bars.append((f"cores allow ({TITLES[key].replace('pyai ', '')})", lim[key]["limit_fps"], "tab:purple"))
            if lim[key].get("limit_left_fps"):
                bars.append((f"cores left by other jobs allow ({TITLES[key].replace('pyai ', '')})",
                             lim[key]["limit_left_fps"], "plum"))
    for key, title in (("protocol_alone", "pyai, protocol alone (default)"),
                       ("protocol_alone_one_thread", "pyai, protocol alone (1 thread)")):
        if res.get(key):
            bars.append((title, res[key]["fps"], "tab:olive"))
    for key in ("pyai", "labelImages4", "labelImages", *[k for k in held if k.startswith("pyai_")]):
        if key in held:
            bars.append((f"held: {TITLES.get(key, key)}", held.get(key), COLORS.get(key, "tab:olive")))
    bars = [b for b in bars if b[1]]
    if not bars:
        ax.axis("off")
        return
    ys = range(len(bars))
    ax.barh(list(ys), [b[1] for b in bars], color=[b[2] for b in bars])
    for y, (_, v, _) in zip(ys, bars):
        ax.annotate(f"{v:.0f}/s", (v, y), va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("frames/s (log)")
    ax.set_title("highest held rate vs the host's ceilings, the cores' limit and the protocol alone")
    ax.grid(True, axis="x", which="both", alpha=0.3)


def write_gate_chart(res: Dict[str, Any], path: Path) -> Optional[str]:
    """The fixed camera's loads, gate off and on: labelled/s and the plugin's and
    kuiperd's CPU against the rate offered."""
    import matplotlib.pyplot as plt  # benchlib.save_results set the backend
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    top = 1.0
    for variant, v in res["fixed_camera"].items():
        rows = sorted(v["loads"], key=lambda r: r["published_fps"])
        if not rows:
            continue
        xs = [r["published_fps"] for r in rows]
        top = max(top, *xs)
        c = GATE_COLORS.get(variant, "k")
        ax1.plot(xs, [r["labelled_fps"] for r in rows], "o-", color=c, label=f"gate {variant}")
        for r in rows:
            if not r["held"]:
                ax1.plot(r["published_fps"], r["labelled_fps"], "x", color="k", ms=9)
        held = v["summary"]["highest_held_fps"]
        if held:
            ax1.axvline(held, color=c, ls=":", lw=1)
        ax2.plot(xs, [r["cpu_share"]["plugin"] * 100 for r in rows], "o-", color=c, label=f"gate {variant}: plugin")
        ax2.plot(xs, [r["cpu_share"]["kuiperd"] * 100 for r in rows], "s--", color=c, alpha=0.6,
                 label=f"gate {variant}: kuiperd")
    ax1.plot([0, top], [0, top], color="gray", lw=0.8, label="labelled = offered")
    ax1.set_xlabel("offered, frames/s (published)")
    ax1.set_ylabel("labelled, frames/s (results received while publishing)")
    ax1.set_title("fixed camera through kuiperd (x: not held; dotted: highest held)")
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    ax2.set_xlabel("offered, frames/s")
    ax2.set_ylabel("CPU, % of the whole machine")
    ax2.set_title("CPU over the publishing window")
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    m = res["machine"]
    fig.suptitle(f"pyai labelImage, a fixed 720p camera, unchanged-frame gate off / on, through kuiperd "
                 f"{res['settings']['kuiperd']}: {m['arch']}, {m['cpu']}, {m['cores']} cores, {res['mode']} mode",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def markdown_rows(res: Dict[str, Any]) -> List[str]:
    """The README table's rows, from a results file."""
    out = []
    for key, rows in res["loads"].items():
        for r in rows:
            lat = r["latency_ms"]
            opts = ",".join(f"{k}={v}" for k, v in r["options"].items())
            out.append(f"| {TITLES.get(key, key)}{' (' + opts + ')' if opts else ''} | {r['phase']} | {r['cameras']} | "
                       f"{r['published_fps']:.0f} | {r['labelled_fps']:.1f} | {lat['p50']:.0f} | {lat['p99']:.0f} | "
                       f"{r['lost']} / {r['published']} | {'yes' if r['held'] else 'no'} | "
                       f"{r['cpu_ms_per_frame']['plugin']:.2f} | {r['cpu_ms_per_frame']['kuiperd']:.2f} |")
    return out
