"""Where a fault's lost frames went: counts taken at each hop of the path a frame
takes through the real host, for the chaos suite (issue #20).

camera --MQTT--> mosquitto --MQTT--> kuiperd source --> operators --> the function
operator (the call to pyai) --> sink --MQTT--> mosquitto --> the test's subscriber.

- ``BrokerProbe``: a second subscriber on the camera's topics at the QoS kuiperd's
  source gets them (0): what the broker delivered;
- ``rule_counters`` / ``counter_deltas``: kuiperd's own counters of a rule
  (``GET /rules/<id>/status``), taken while nothing streams, so their difference is
  exactly what the fault's window carried;
- ``host_log_events``: the host's log lines of the window that say why a frame
  went (a call's timeout, a buffer full, a discarded reply).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Dict, List, Mapping

_COUNTER = re.compile(r"^(source|op|sink)_.*_(records_in_total|records_out_total|exceptions_total)$")
# The host's log lines that tell where a frame went; counted in the window.
LOG_EVENTS = {
    "call_timeouts": re.compile(r"time out, plugin|recv(eive)? time ?out|object timed out|ErrRecvTimeout", re.I),
    "buffer_full_drops": re.compile(r"buffer full", re.I),
    "discarded_replies": re.compile(r"discard previous response", re.I),
    "cannot_receive": re.compile(r"can't receive", re.I),
    "operation_errors": re.compile(r"Operation \S+ error", re.I),
}


class BrokerProbe:
    """Counts the frames (``<prefix>/<seq>``) mosquitto delivered to a subscriber of its
    own at QoS 0, as it delivers them to kuiperd's source."""

    def __init__(self, port: int, prefix: str):
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.seen: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pyai-probe-{os.getpid()}")
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/+", qos=0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {prefix}/+")

    def _on_message(self, client, userdata, msg) -> None:
        tail = msg.topic[len(self.prefix) + 1:]
        if tail.isdigit():
            with self._lock:
                self.seen[int(tail)] = self.seen.get(int(tail), 0) + 1

    def delivered(self) -> Dict[int, int]:
        with self._lock:
            return dict(self.seen)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def rule_counters(status: Mapping[str, Any]) -> Dict[str, int]:
    """The records in/out and exceptions counters of every node of a rule."""
    return {k: int(v) for k, v in status.items() if _COUNTER.match(k) and isinstance(v, (int, float))}


def counter_deltas(before: Mapping[str, int], after: Mapping[str, int]) -> Dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after)}


def _sum(deltas: Mapping[str, int], kind: str, tail: str, contains: str = "") -> int:
    return sum(v for k, v in deltas.items() if k.startswith(kind + "_") and k.endswith(tail) and contains in k)


def hops(deltas: Mapping[str, int]) -> Dict[str, int]:
    """The counters of each hop: the source's records in, the function operator's (the
    rule's ``project``) records in/out and exceptions, the sink's records in."""
    return {
        "source_in": _sum(deltas, "source", "_records_in_total"),
        "op_in": _sum(deltas, "op", "_records_in_total", "project"),
        "op_out": _sum(deltas, "op", "_records_out_total", "project"),
        "op_exceptions": _sum(deltas, "op", "_exceptions_total", "project"),
        "other_op_exceptions": _sum(deltas, "op", "_exceptions_total") - _sum(deltas, "op", "_exceptions_total", "project"),
        "source_exceptions": _sum(deltas, "source", "_exceptions_total"),
        "sink_in": _sum(deltas, "sink", "_records_in_total"),
        "sink_out": _sum(deltas, "sink", "_records_out_total"),
    }


def host_log_events(text: str, rule_id: str) -> Dict[str, Any]:
    """Counts of the telling lines of the host's log ``text`` (all rules), and the
    distinct error messages of ``rule_id`` (first 3, cut at 300 characters)."""
    lines = text.splitlines()
    out: Dict[str, Any] = {name: sum(1 for line in lines if rx.search(line)) for name, rx in LOG_EVENTS.items()}
    seen: List[str] = []
    for line in lines:
        if rule_id in line and LOG_EVENTS["operation_errors"].search(line):
            msg = re.sub(r"^.*?Operation \S+ error", "", line).strip()[:300]
            if msg not in seen:
                seen.append(msg)
    out["rule_error_messages"] = seen[:3]
    return out


def offsets(times: List[float], origin: float) -> List[float]:
    return [round(t - origin, 2) for t in sorted(times)]
