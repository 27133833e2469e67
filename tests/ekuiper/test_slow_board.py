"""A slow board against eKuiper v1.14.7, which kills a plugin that has not sent its
handshake within 5 s of starting it (v2 waits 60 s): with the model taking 6 s
longer to load (``tests/slow_load.py``), the rule must still be created and
start labelling once the model is in, because pyai greets the host before it
loads anything. (Before this release the handshake came after the model: the
rule failed with "control handshake error".)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict

import pytest

from tests.conftest import REPO
from tests.ekuiper.common import FRAME_TOPIC, RULE_SQL, STREAM_SQL, fail, mqtt_action
from tests.ekuiper.conftest import start_host, venv_has_requirements, venv_python
from tests.ekuiper.harness import Mosquitto, MqttCollector

pytestmark = pytest.mark.ekuiper

VERSION = "v1.14.7"
DELAY_S = 6.0


def test_handshake_beats_a_slow_model_load(broker: Mosquitto, mqtt: MqttCollector, plugin_zip: Path,
                                           decoy_python: Path, images: Dict[str, bytes],
                                           expected_top1: Dict[str, str], tmp_path: Path) -> None:
    python = venv_python(tmp_path)
    # kuiperd runs `pythonBin -u main.py <json>`: here a wrapper that slows the load.
    wrapper = tmp_path / "slow-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" "{REPO / "tests" / "slow_load.py"}" "$@"\n')
    wrapper.chmod(0o755)
    k = start_host(VERSION, tmp_path, broker, wrapper, decoy_python, env={"PYAI_TEST_LOAD_DELAY_S": str(DELAY_S)})
    try:
        # install.sh cannot run pip through the wrapper: it is told the venv.
        status, answer = k.rest.install_plugin(plugin_zip, shell_paras=["--python", str(python)])
        if status >= 300:
            fail(k, f"install -> HTTP {status}: {answer}")
        assert venv_has_requirements(python)[0]
        k.rest.create_stream(STREAM_SQL)
        t0 = time.monotonic()
        # v1.14.7 starts the plugin here and waits 5 s for its handshake.
        k.rest.create_rule("slow", RULE_SQL, [mqtt_action(broker.url, "tfdemo/result/slow")])
        created = time.monotonic() - t0
        mqtt.subscribe("tfdemo/result/slow")
        answer = None
        deadline = time.monotonic() + 40
        while answer is None and time.monotonic() < deadline:
            mqtt.publish(FRAME_TOPIC, images["cat_720p.jpg"])
            raw = mqtt.get("tfdemo/result/slow", 2.0)
            if raw is not None:
                answer = json.loads(raw)
                if "error" in answer:  # v1.14.7 also sends call errors to the sink
                    answer = None
        first = time.monotonic() - t0
        if answer is None:
            fail(k, "no label within 40 s of creating the rule")
        assert answer == {"label": expected_top1["cat_720p.jpg"]}
        assert "handshake error" not in k.log_text()
        assert first >= DELAY_S, "the load was not slowed: the test proves nothing"
        print(f"\n{VERSION}: rule created in {created:.1f} s, first label {first:.1f} s after (model load + {DELAY_S:.0f} s)")
    finally:
        k.stop()
