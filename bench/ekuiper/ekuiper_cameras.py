#!/usr/bin/env python3
"""Cameras as MQTT publishers: the load generator of ``bench/ekuiper/ekuiper_bench.py``.

    python bench/ekuiper/ekuiper_cameras.py --port 1883 --cameras 4 --fps 30 --seconds 20 \
        (--frame cat_720p.jpg | --frames-dir DIR [--frame-offset N]) [--qos 0] [--prefix tfdemo]

One paho client per camera; every camera publishes the frame at a fixed rate, the
cameras' phases spread evenly over one frame period (as independent cameras would
be). One scheduler thread sends every publish at its planned time (a camera does
not wait for anyone: a late publish is sent at once and counted as late, never
skipped), and each client's own network thread writes it out.

``--frames-dir`` publishes a sequence instead of one file (a fixed camera's frames,
as ``ekuiper_gate.py`` writes them): the folder's ``*.jpg`` in name order, each
camera cycling through them from frame ``camera x N`` (``--frame-offset``; default
0, every camera from the first). They are read into memory before the first publish.

Each frame goes to its own topic ``<prefix>/c<camera>/<seq>/<t_ns>``, ``t_ns`` the
CLOCK_MONOTONIC time of the publish call (``time.monotonic_ns``, one clock for
every process on the machine): the rule reads it back with ``meta(topic)``, so a
result names the exact frame it belongs to and its publish time, whatever eKuiper
dropped in between (the broker's message id cannot do that: it is per connection,
the subscriber's differs from the publisher's).

It runs as its own process so the bench can measure its CPU; at the end it prints
one JSON line: frames published per camera, late publishes, and its own CPU time.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

log = logging.getLogger("pyai.bench.cameras")


@dataclass
class CameraStats:
    published: int = 0
    late: int = 0  # sent more than one frame period after its planned time
    errors: int = 0
    max_lag_ms: float = 0.0


@dataclass
class RunStats:
    cameras: int
    fps: float
    seconds: float
    qos: int
    frame_bytes: int  # the first frame's
    frame_count: int = 1
    per_camera: List[CameraStats] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system, this process, all threads, from the first publish on

    @property
    def published(self) -> int:
        return sum(c.published for c in self.per_camera)


def connect(port: int, name: str, timeout: float = 10.0):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    # Frames are big and come fast: let paho queue what the socket has not taken
    # yet instead of refusing it (QoS 0 publishes are not limited by inflight).
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(timeout):
        raise TimeoutError(f"{name}: no CONNACK within {timeout:.0f} s")
    return client


def run(port: int, cameras: int, fps: float, seconds: float, frames: List[bytes], qos: int = 0,
        prefix: str = "tfdemo", start_at: Optional[float] = None, offset: int = 0) -> RunStats:
    """Publish ``cameras`` x ``fps`` frames/s for ``seconds``; ``start_at`` is a
    time.monotonic() to begin at (default: now). Camera ``c`` sends ``frames`` in
    turn from frame ``c * offset``."""
    clients = [connect(port, f"pyai-cam{c}-{os.getpid()}") for c in range(cameras)]
    stats = RunStats(cameras, fps, seconds, qos, len(frames[0]), len(frames), [CameraStats() for _ in range(cameras)])
    period = 1.0 / fps
    t0 = max(start_at or 0.0, time.monotonic())
    n_per_cam = int(round(seconds * fps))
    # (planned time, camera, seq): one heap for all cameras, phases spread evenly.
    plan = [(t0 + c * period / cameras, c, 0) for c in range(cameras)]
    heapq.heapify(plan)
    cpu0: Optional[float] = None
    try:
        while plan:
            due, cam, seq = heapq.heappop(plan)
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
                now = time.monotonic()
            if cpu0 is None:
                cpu0 = time.process_time()  # CPU of the whole process (every thread) from the first publish
            cs = stats.per_camera[cam]
            lag = now - due
            if lag > period:
                cs.late += 1
            cs.max_lag_ms = max(cs.max_lag_ms, lag * 1e3)
            t_ns = time.monotonic_ns()
            info = clients[cam].publish(f"{prefix}/c{cam}/{seq}/{t_ns}", frames[(cam * offset + seq) % len(frames)],
                                         qos=qos)
            if info.rc == 0:
                cs.published += 1
            else:
                cs.errors += 1
            if seq + 1 < n_per_cam:
                heapq.heappush(plan, (due + period, cam, seq + 1))
        # Let the network threads write out what paho still holds.
        deadline = time.monotonic() + 5.0
        for client in clients:
            while client.want_write() and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
    stats.wall_s = time.monotonic() - t0
    stats.cpu_s = time.process_time() - (cpu0 if cpu0 is not None else 0.0)
    return stats


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--fps", type=float, default=30.0, help="frames per second, per camera")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument("--prefix", default="tfdemo")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--frame", type=Path, action="append", help="JPEG file(s), used in turn")
    src.add_argument("--frames-dir", type=Path, help="a sequence: this folder's *.jpg in name order, cycled")
    ap.add_argument("--frame-offset", type=int, default=0,
                    help="camera c starts at frame c x this (default 0: every camera from the first)")
    ap.add_argument("--start-at", type=float, help="time.monotonic() to start publishing at")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    paths = args.frame or sorted(args.frames_dir.glob("*.jpg"))
    if not paths:
        ap.error(f"no *.jpg in {args.frames_dir}")
    frames = [p.read_bytes() for p in paths]
    stats = run(args.port, args.cameras, args.fps, args.seconds, frames, args.qos, args.prefix, args.start_at,
                args.frame_offset)
    out = asdict(stats)
    out["published"] = stats.published
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
