#!/usr/bin/env python3
"""What idle keep-alives cost, measured through the real kuiperd (issue #11, point 5).

The eKuiper SDK's REQ socket re-sends a handshake after 5 s idle. The host reads
a function's channel only during a call, so after an idle period the next call
meets every keep-alive queued since and re-sends its request once for each. pyai
sent them too until this release. For each plugin (an older pyai commit with
keep-alives, and this checkout without them) in a fresh kuiperd v2.4.0 with
mosquitto on loopback:

1. the rules ``labelImages(self)`` over ``CountWindow(8)`` and the tutorial's
   ``labelImage(self)``, warmed up;
2. a window of 8 x 1080p frames, then a single frame, with nothing idle before
   (publish of the last frame -> the rule's MQTT result);
3. ``--idle`` seconds (default 130) without a frame;
4. the same window and single frame again.

Besides the latency it reports the CPU time the plugin process and kuiperd spent
during each call (``/proc/<pid>/task/*/schedstat``, all threads): a request re-sent
once per queued keep-alive is sent, read and dropped that many times (a 8 x 1080p
window is 2.3 MB of base64).

    python bench/ekuiper/ekuiper_keepalive.py [--idle 130] [--old-ref 3383353] [--out bench/results/<arch>-keepalive.json]

Runs one kuiperd at a time; hold ``/tmp/pyai-host.lock`` (the IPC paths are fixed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.ekuiper import build_kuiperd  # noqa: E402
from tests.ekuiper.common import FRAME_TOPIC, RULE_SQL, STREAM_SQL, mqtt_action, wait_first  # noqa: E402
from tests.ekuiper.harness import Kuiperd, Mosquitto, MqttCollector, make_venv  # noqa: E402

VERSION = "v2.4.0"
WINDOW_SQL = "SELECT labelImages(self) AS labels FROM tfdemo GROUP BY CountWindow(8)"
OLD_REF = "3383353"  # the last commit whose plugin sent keep-alives


def build_zip(ref: Optional[str], out: Path) -> Path:
    """dist zip of this checkout (ref None) or of an older commit, built in a temporary worktree."""
    if ref is None:
        subprocess.run([sys.executable, "-m", "pyai.plugin.package", "--out", str(out)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        return out
    tree = Path(tempfile.mkdtemp(prefix="pyai-old-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        models = tree / "models"
        for f in (REPO / "models").iterdir():
            if f.suffix in (".tflite", ".txt") and not (models / f.name).exists():
                os.symlink(f, models / f.name)
        subprocess.run([sys.executable, "-m", "pyai.plugin.package", "--out", str(out)], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total


def serving_pid(k: Kuiperd) -> int:
    pids = [p for p in k.plugin_pids() if "--guard" not in _cmd(p)]
    if len(pids) != 1:
        raise RuntimeError(f"expected one plugin process, found {pids}")
    return pids[0]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def timed(mqtt: MqttCollector, topic: str, frames: List[bytes], pid: int, host_pid: int,
          timeout: float = 60) -> Dict[str, float]:
    """Publish ``frames``; ms from the last publish to the rule's answer, and the CPU ms
    the plugin and kuiperd spent from the first publish to the answer."""
    plugin0, host0 = cpu_ns(pid), cpu_ns(host_pid)
    for frame in frames[:-1]:
        mqtt.publish(FRAME_TOPIC, frame)
    t0 = time.perf_counter()
    mqtt.publish(FRAME_TOPIC, frames[-1])
    if mqtt.get(topic, timeout) is None:
        raise TimeoutError(f"no answer on {topic} within {timeout:.0f} s")
    return {"ms": round((time.perf_counter() - t0) * 1000, 1),
            "plugin_cpu_ms": round((cpu_ns(pid) - plugin0) / 1e6, 1),
            "kuiperd_cpu_ms": round((cpu_ns(host_pid) - host0) / 1e6, 1)}


def measure(label: str, zip_path: Path, env: Dict[str, str], idle_s: float, frame: bytes, work: Path,
            broker: Mosquitto) -> Dict[str, Any]:
    binary = build_kuiperd.build(VERSION) if build_kuiperd.cached_binary(VERSION) is None else build_kuiperd.cached_binary(VERSION)
    python = make_venv(work / "venv")
    k = Kuiperd(binary, build_kuiperd.version_dir(VERSION) / "etc", work / "kuiper", broker.url, python_bin=str(python),
                env=env)
    k.start()
    mqtt = MqttCollector(broker.port)
    try:
        status, answer = k.rest.install_plugin(zip_path)
        if status >= 300:
            raise RuntimeError(f"install of {label}: HTTP {status}: {answer}\n{k.log_tail()}")
        k.rest.create_stream(STREAM_SQL)
        k.rest.create_rule("window", WINDOW_SQL, [mqtt_action(broker.url, "ka/window")])
        k.rest.create_rule("single", RULE_SQL, [mqtt_action(broker.url, "ka/single")])
        mqtt.subscribe("ka/window")
        mqtt.subscribe("ka/single")
        wait_first(k, mqtt, "ka/single", frame)
        # Line the count window up: frames until a window closes.
        for _ in range(9):
            mqtt.publish(FRAME_TOPIC, frame)
            if mqtt.get("ka/window", 5) is not None:
                break
        mqtt.drain("ka/window", quiet=1.0)
        mqtt.drain("ka/single", quiet=1.0)
        pid, host_pid = serving_pid(k), k.proc.pid
        out: Dict[str, Any] = {"plugin": label}
        # A window answers on its 8th frame; the single rule answers every frame.
        out["warm_window"] = timed(mqtt, "ka/window", [frame] * 8, pid, host_pid)
        mqtt.drain("ka/single", quiet=1.0)
        out["warm_single"] = timed(mqtt, "ka/single", [frame], pid, host_pid)
        mqtt.drain("ka/window", quiet=0.5)
        print(f"{label}: warm window {out['warm_window']}, single {out['warm_single']}; idle {idle_s:.0f} s", flush=True)
        time.sleep(idle_s)
        out["idle_s"] = idle_s
        out["after_idle_window"] = timed(mqtt, "ka/window", [frame] * 8, pid, host_pid)
        mqtt.drain("ka/single", quiet=1.0)
        out["after_idle_single"] = timed(mqtt, "ka/single", [frame], pid, host_pid)
        out["frame_bytes"] = len(frame)
        print(f"{label}: after idle window {out['after_idle_window']}, single {out['after_idle_single']}", flush=True)
        return out
    finally:
        mqtt.close()
        k.stop()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=float, default=130.0)
    ap.add_argument("--old-ref", default=OLD_REF)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / f"{platform.machine()}-keepalive.json")
    args = ap.parse_args(argv)
    images = Path(os.environ.get("PYAI_IMAGES_MIRROR", REPO / "models" / "samples"))
    frame = (images / "cat_1080p.jpg").read_bytes()
    work = Path(tempfile.mkdtemp(prefix="pyai-keepalive-"))
    broker = Mosquitto(work / "mosquitto").start()
    results = []
    try:
        old_zip = build_zip(args.old_ref, work / "old.zip")
        new_zip = build_zip(None, work / "new.zip")
        for name, label, zip_path in (("old", f"pyai {args.old_ref} (keep-alives)", old_zip),
                                      ("new", "pyai (this checkout)", new_zip)):
            sub = work / name
            sub.mkdir()
            # The old install.sh ignored pythonBin; PYAI_PYTHON was its override.
            env = {"PYAI_PYTHON": str(sub / "venv" / "bin" / "python")}
            results.append(measure(label, zip_path, env, args.idle, frame, sub, broker))
    finally:
        broker.stop()
    report = {
        "what": "publish -> MQTT result through kuiperd v2.4.0, before and after an idle period; "
                "*_cpu_ms = CPU time of the plugin process / kuiperd (all threads) during the call",
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "frame": "cat_1080p.jpg",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'plugin':34} {'window warm':>14} {'window idle':>14} {'single warm':>12} {'single idle':>12}")
    for r in results:
        print(f"{r['plugin']:34} {r['warm_window']['ms']:8.1f} ms {r['after_idle_window']['ms']:8.1f} ms "
              f"{r['warm_single']['ms']:7.1f} ms {r['after_idle_single']['ms']:7.1f} ms")
        for who in ("plugin", "kuiperd"):
            key = f"{who}_cpu_ms"
            print(f"{'  CPU ms, ' + who:34} {r['warm_window'][key]:11.1f} {r['after_idle_window'][key]:14.1f} "
                  f"{r['warm_single'][key]:12.1f} {r['after_idle_single'][key]:12.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
