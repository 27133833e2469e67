"""Helpers shared by the real-host tests: the tutorial's stream and rule, frames,
waiting for labels with the kuiperd log in every failure message."""

from __future__ import annotations

import json
import struct
import time
import zlib
from typing import Any, Dict, List, Optional

import pytest

from tests.ekuiper.harness import Kuiperd, MqttCollector, last_exceptions

# The tutorial's statements, verbatim.
STREAM_SQL = 'CREATE STREAM tfdemo () WITH (DATASOURCE="tfdemo", FORMAT="BINARY")'
RULE_SQL = "SELECT labelImage(self)[0]->label AS label FROM tfdemo"
FRAME_TOPIC = "tfdemo"

# v1.x starts the plugin at first use and waits 5 s for its handshake; v2 started
# it at install. The first label can take the process start + model load.
FIRST_LABEL_TIMEOUT = 90.0
LABEL_TIMEOUT = 20.0


def mqtt_action(broker_url: str, topic: str) -> Dict[str, Any]:
    return {"mqtt": {"server": broker_url, "topic": topic, "sendSingle": True}}


def fail(k: Kuiperd, message: str) -> None:
    pytest.fail(f"{message}\n{k.log_tail()}", pytrace=False)


def wait_first(k: Kuiperd, mqtt: MqttCollector, topic: str, frame: bytes,
               timeout: float = FIRST_LABEL_TIMEOUT, every: float = 3.0) -> Any:
    """Publish ``frame`` every ``every`` seconds until the rule answers on ``topic``
    (the MQTT source subscribes, and the plugin starts, a moment after the rule is
    created); then drop whatever else is on its way. Returns the first answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mqtt.publish(FRAME_TOPIC, frame)
        raw = mqtt.get(topic, every)
        if raw is not None:
            mqtt.drain(topic, quiet=every)
            return json.loads(raw)
    fail(k, f"no message on {topic} within {timeout:.0f} s of publishing frames")


def label_one(k: Kuiperd, mqtt: MqttCollector, topic: str, frame: bytes, what: str,
              timeout: float = LABEL_TIMEOUT) -> Any:
    mqtt.publish(FRAME_TOPIC, frame)
    answer = mqtt.get_json(topic, timeout)
    if answer is None:
        fail(k, f"no answer on {topic} within {timeout:.0f} s for {what}")
    return answer


def wait_exception(k: Kuiperd, rule_id: str, before: Dict[str, str], timeout: float = 20) -> Dict[str, str]:
    """The rule's ``*_last_exception`` metrics once one of them changed from ``before``."""
    deadline = time.monotonic() + timeout
    status: Dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = k.rest.rule_status(rule_id)
        now = last_exceptions(status)
        if now and now != before:
            return now
        time.sleep(0.3)
    fail(k, f"rule {rule_id} shows no new last_exception within {timeout:.0f} s; status: {json.dumps(status)[:3000]}")
    return {}


def rule_running(k: Kuiperd, rule_id: str) -> bool:
    status = k.rest.rule_status(rule_id)
    return status.get("status") == "running"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width x height, with one tiny IDAT: the
    decompression bomb's header without the bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def top1s(result: List[Dict[str, Any]]) -> Optional[str]:
    return result[0]["label"] if result else None
