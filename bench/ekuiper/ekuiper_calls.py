"""``pyaiStats()`` read while a load runs, and pyai's side of the serial call cycle.

eKuiper sends a function one request at a time, so a saturated ``labelImage`` rule
runs a cycle: pyai's call, then the host's time from pyai's reply to its next
request. pyai counts both for every symbol (``pyaiStats()`` → ``process.calls``,
pyai/plugin/runtime.py ``CallCounts``). This probe reads those counters just before
the cameras start and just after they stop, through a rule of its own on a stream
of its own (``pyaistats/q``), which no camera frame reaches, so the rule costs
kuiperd nothing while the load runs and answers at once when asked. The
difference of the two snapshots is the load's cycle, exactly: the calls made
while the cameras published, their mean time in pyai and the mean time between.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from bench.ekuiper.ekuiper_host import RESULT_PREFIX, Host
from tests.ekuiper.harness import MqttCollector, RestError

log = logging.getLogger("pyai.bench.ekuiper")

STREAM = "pyaistats"
TOPIC = f"{STREAM}/q"
STREAM_SQL = f'CREATE STREAM {STREAM} () WITH (DATASOURCE="{TOPIC}", FORMAT="BINARY")'
SQL = f"SELECT pyaiStats() AS stats FROM {STREAM}"
FIRST_ANSWER_S = 30.0  # the rule's source subscribes a moment after the rule starts
ANSWER_S = 10.0


class StatsProbe:
    """A ``pyaiStats()`` rule on the probe's own stream: asked as often as needed while
    it lives (the call cycle of a load), or once (ekuiper_gate's counts)."""

    def __init__(self, host: Host, tag: str):
        self.host = host
        self.rule_id = f"pyai_stats_{tag}"
        self.topic = f"{RESULT_PREFIX}/{self.rule_id}"
        try:
            host.rest.create_stream(STREAM_SQL)
        except RestError as exc:
            if "exist" not in str(exc).lower():
                raise
        self.mqtt = MqttCollector(host.broker.port)
        self.mqtt.subscribe(self.topic)
        host.create_rule(self.rule_id, SQL)
        self._ready = False

    def snapshot(self) -> Optional[Dict[str, Any]]:
        """pyaiStats() now, or None when no answer came."""
        if not self._ready:
            deadline = time.monotonic() + FIRST_ANSWER_S
            while time.monotonic() < deadline:
                self.mqtt.publish(TOPIC, b"q")
                if self.mqtt.get(self.topic, 1.0) is not None:
                    break
            else:
                log.warning("pyaiStats() gave no answer within %.0f s", FIRST_ANSWER_S)
                return None
            self._ready = True
            self.mqtt.drain(self.topic, quiet=0.3)  # the answers to the retries
        self.mqtt.publish(TOPIC, b"q")
        got = self.mqtt.get_json(self.topic, ANSWER_S)
        return got.get("stats") if isinstance(got, dict) and isinstance(got.get("stats"), dict) else None

    def close(self) -> None:
        try:
            self.host.rest.delete_rule(self.rule_id)
        finally:
            self.mqtt.close()


def cycle(before: Optional[Dict[str, Any]], after: Optional[Dict[str, Any]], symbol: str) -> Optional[Dict[str, Any]]:
    """The calls of ``symbol`` between two snapshots of one process: how many, their
    mean time in pyai, the mean time from a reply to the next request, and the cycle
    they make; None when a snapshot is missing or the process changed between them."""
    if not before or not after:
        return None
    p0, p1 = before.get("process") or {}, after.get("process") or {}
    if p0.get("pid") is None or p0.get("pid") != p1.get("pid"):
        return None
    t0 = ((p0.get("calls") or {}).get(symbol) or {}).get("totals")
    t1 = ((p1.get("calls") or {}).get(symbol) or {}).get("totals")
    if not t0 or not t1:
        return None
    calls, gaps = t1["calls"] - t0["calls"], t1["gaps"] - t0["gaps"]
    if calls <= 0 or gaps <= 0:
        return None
    call_ms = (t1["call_s"] - t0["call_s"]) * 1000.0 / calls
    between_ms = (t1["between_s"] - t0["between_s"]) * 1000.0 / gaps
    return {"calls": calls, "call_ms": round(call_ms, 3), "between_ms": round(between_ms, 3),
            "cycle_ms": round(call_ms + between_ms, 3)}
