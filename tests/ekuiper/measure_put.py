"""How long a ``PUT /plugins/portables/pyai`` (the tutorial's way to change a plugin) leaves a
30 fps camera without labels, next to the config-edit change, through the real kuiperd.

    flock /tmp/pyai-host.lock flock /tmp/pyai-timing.lock python tests/ekuiper/measure_put.py [v2.4.0]

With PYAI_MODEL_CHANGE_SAVE=<file> both runs are appended to it as JSON lines.

Run in the ``ekuiper`` tox environment's Python (paho-mqtt, pyai's requirements); needs
a cached kuiperd (tests/ekuiper/build_kuiperd.py) and mosquitto. Prints one line per
change; docs/own-model.md quotes it.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.ekuiper import build_kuiperd, model_change  # noqa: E402
from tests.ekuiper.common import RULE_SQL, STREAM_SQL, mqtt_action, wait_first  # noqa: E402
from tests.ekuiper.harness import Kuiperd, Mosquitto, MqttCollector, make_venv  # noqa: E402


def main(version: str = "v2.4.0") -> int:
    from pyai.plugin import package

    fetch = runpy.run_path(str(REPO / "models" / "fetch.py"))
    fetch["fetch"](list(fetch["PINNED"]), quiet=True)
    images = {p.name: p.read_bytes() for p in fetch["fetch_images"](quiet=True)}
    frame = images["cat_720p.jpg"]
    binary = build_kuiperd.cached_binary(version)
    if binary is None:
        print(f"no cached kuiperd {version}: python tests/ekuiper/build_kuiperd.py {version}")
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        zip_path = package.build(tmp / "pyai.zip")
        python = make_venv(tmp / "venv")
        broker = Mosquitto(tmp / "mosquitto").start()
        k = Kuiperd(binary, build_kuiperd.version_dir(version) / "etc", tmp / "kuiper", broker.url,
                    python_bin=str(python)).start()
        mqtt = MqttCollector(broker.port)
        try:
            print(f"{version}: install {k.rest.install_plugin(zip_path)[0]}")
            k.rest.create_stream(STREAM_SQL)
            topic = "tfdemo/result/put"
            k.rest.create_rule("put", RULE_SQL, [mqtt_action(broker.url, topic)])
            mqtt.subscribe(topic)
            wait_first(k, mqtt, topic, frame)
            run = model_change.stream_through_changes(k, mqtt, "tfdemo", topic, frame, REPO / "models")
            print(run.summary(version + " config edit"))
            model_change.save(run, version + " config edit")
            cam = model_change.Camera(mqtt, "tfdemo", topic, frame)
            time.sleep(1.0)
            put_at = time.monotonic()
            status, answer = k.rest.update_plugin(zip_path)
            put_done = time.monotonic()
            deadline = put_done + 120
            while time.monotonic() < deadline and not any(t > put_done for t, _ in cam.answers):
                time.sleep(0.05)
            time.sleep(1.0)
            cam.finish()
            times = [t for t, _ in cam.answers]
            gaps = [(b - a, a) for a, b in zip(times, times[1:])]
            gap, at = max(gaps) if gaps else (float("inf"), 0.0)
            after = [t for t in times if t > put_at]
            record = {
                "version": version, "put_status": status, "put_seconds": round(put_done - put_at, 2),
                "published": len(cam.published), "answered": len(cam.answers),
                "longest_gap_s": round(gap, 2), "gap_started_after_put_s": round(at - put_at, 2),
                "first_answer_after_put_s": round(after[0] - put_at, 2) if after else None,
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            print(json.dumps(record))
            if os.environ.get(model_change.SAVE_ENV):
                with open(os.environ[model_change.SAVE_ENV], "a") as f:
                    f.write(json.dumps(record) + "\n")
        finally:
            mqtt.close()
            k.stop()
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
