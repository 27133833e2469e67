"""How install.sh learns which interpreter to install into, against the real host.
Each case gets its own fresh venv (not on PATH) and its own kuiperd, installs the
zip, checks the requirements landed in that venv, and labels one photo through the
tutorial's rule. (Fail with the pre-fix install.sh, which installs into `python`
on PATH.)

- ``KUIPER__PORTABLE__PYTHONBIN``: pythonBin set in kuiperd's environment only,
  ``etc/kuiper.yaml`` left at its default ``python``.
- ``shellParas: ["--python", <venv python>]``: the agreed interface, install.sh
  accepts ``--python <path>`` as its shell parameters (pythonBin in kuiper.yaml
  points at the same venv, so the plugin runs where it was installed).

(pythonBin in ``etc/kuiper.yaml`` alone is test_tutorial.py's install.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional

import pytest

from tests.ekuiper.common import RULE_SQL, STREAM_SQL, fail, mqtt_action, wait_first
from tests.ekuiper.conftest import start_host, venv_has_requirements, venv_python, VERSIONS
from tests.ekuiper.harness import Mosquitto, MqttCollector

pytestmark = pytest.mark.ekuiper


def _install_and_label(version: str, tmp_path: Path, broker: Mosquitto, mqtt: MqttCollector, plugin_zip: Path, decoy: Path,
                       images: Dict[str, bytes], expected_top1: Dict[str, str], in_yaml: bool,
                       env_python: bool, shell_paras: bool) -> None:
    python = venv_python(tmp_path)
    env: Optional[Dict[str, str]] = {"KUIPER__PORTABLE__PYTHONBIN": str(python)} if env_python else None
    k = start_host(version, tmp_path, broker, python, decoy, in_yaml=in_yaml, env=env)
    try:
        started = time.monotonic()
        status, answer = k.rest.install_plugin(plugin_zip, ["--python", str(python)] if shell_paras else None)
        print(f"\n{version}: install took {time.monotonic() - started:.1f} s -> {status} {answer}")
        if status >= 300:
            fail(k, f"POST /plugins/portables -> HTTP {status}: {answer}")
        ok, why = venv_has_requirements(python)
        assert ok, f"install.sh did not install the requirements into {python}: {why}"
        assert not venv_has_requirements(decoy)[0], "install.sh (also) installed into `python` on PATH"
        k.rest.create_stream(STREAM_SQL)
        topic = "tfdemo/result/install"
        k.rest.create_rule("ruleTf", RULE_SQL, [mqtt_action(broker.url, topic)])
        mqtt.subscribe(topic)
        got = wait_first(k, mqtt, topic, images["cat_720p.jpg"])
        assert got == {"label": expected_top1["cat_720p.jpg"]}, got
    finally:
        k.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_pythonbin_from_environment(version, tmp_path, broker, mqtt, plugin_zip, decoy_python, images, expected_top1) -> None:
    _install_and_label(version, tmp_path, broker, mqtt, plugin_zip, decoy_python, images, expected_top1,
                       in_yaml=False, env_python=True, shell_paras=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_python_as_shell_parameter(version, tmp_path, broker, mqtt, plugin_zip, decoy_python, images, expected_top1) -> None:
    _install_and_label(version, tmp_path, broker, mqtt, plugin_zip, decoy_python, images, expected_top1,
                       in_yaml=True, env_python=False, shell_paras=True)
