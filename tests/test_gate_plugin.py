"""The unchanged-frame gate through the plugin protocol (the stand-in host): the call
site is the function meta eKuiper sends with every Exec (here: the rule id)."""

from __future__ import annotations

import base64
import os
from typing import Dict

import pytest

from pyai.gate import DEFAULT_THRESHOLD
from tests.hostsim import PluginHost

from .conftest import EXPECTED_TOP1
from .test_gate import camera_shot

# Scenes the shipped model answers the same on every shot: the gate reuses an
# answer once the model gave it twice.
PARROT = EXPECTED_TOP1["parrot.jpg"]
HOT_DOG = EXPECTED_TOP1["hot_dog.jpg"]


@pytest.fixture(scope="module")
def gated_host(host, installed_plugin, tmp_path_factory):
    """The installed plugin with ``PYAI_SKIP_UNCHANGED`` set; the session's host is
    closed meanwhile (the IPC addresses are fixed) and started again afterwards."""
    plugin_dir, python, _ = installed_plugin
    host.close()
    env = dict(os.environ, PYAI_SKIP_UNCHANGED=str(DEFAULT_THRESHOLD))
    h = PluginHost(plugin_dir, python, env=env, log_path=tmp_path_factory.mktemp("gate") / "plugin.log",
                   recv_timeout_s=float(os.environ.get("PYAI_HOST_TIMEOUT", "5")))
    try:
        h.start()
        h.start_symbol("labelImage")
        yield h
    finally:
        log = h.log_text()
        h.close()
        if "Traceback" in log:
            print(log[-4000:])
        host.start()
        host.start_symbol("labelImage")


@pytest.fixture(scope="module")
def b64(images: Dict[str, bytes]) -> Dict[str, list]:
    def enc(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "parrot": [enc(camera_shot(images["parrot.jpg"], s)) for s in range(3)],
        "hotdog": [enc(camera_shot(images["hot_dog.jpg"], s)) for s in range(2)],
    }


def _ok(reply):
    assert reply.state, reply.result
    return reply.result


def _site(host, rule: str) -> dict:
    return _ok(host.exec("pyaiStats"))["gate"]["sites"][f"{rule}/op1/0/0"]


def test_rules_are_separate_sites_and_a_reused_answer_honours_topk(gated_host, b64):
    full = _ok(gated_host.exec("labelImage", b64["parrot"][0], rule="gA"))  # the reference
    assert full[0]["label"] == PARROT and len(full) == 5
    for shot in (b64["parrot"][1], b64["parrot"][2]):  # run: they confirm it
        assert _ok(gated_host.exec("labelImage", shot, rule="gA"))[0]["label"] == PARROT
    assert _ok(gated_host.exec("labelImage", b64["parrot"][1], 2, rule="gA")) == full[:2]
    # Another rule sees the same frames: its own first frame runs the model.
    assert _ok(gated_host.exec("labelImage", b64["parrot"][1], rule="gB")) != []
    assert _site(gated_host, "gA") == {"checked": 4, "reused": 1, "run": 3}
    assert _site(gated_host, "gB") == {"checked": 1, "reused": 0, "run": 1}


def test_a_changed_scene_runs_and_a_bad_frame_is_an_error(gated_host, b64, images):
    assert _ok(gated_host.exec("labelImage", b64["parrot"][0], rule="gC"))[0]["label"] == PARROT
    truncated = base64.b64encode(images["cat_720p.jpg"][:5000]).decode()
    reply = gated_host.exec("labelImage", truncated, rule="gC")
    assert not reply.state and "JPEG" in reply.result
    assert _ok(gated_host.exec("labelImage", b64["hotdog"][0], rule="gC"))[0]["label"] == HOT_DOG
    # The cut-off frame was walked (and refused, then refused by the decoder): checked,
    # neither reused nor run.
    assert _site(gated_host, "gC") == {"checked": 3, "reused": 0, "run": 2}


def test_label_images_windows_reuse_in_order(gated_host, b64):
    gated_host.start_symbol("labelImages")
    window = [b64["parrot"][0], b64["parrot"][1], b64["parrot"][2], b64["parrot"][0], "not base64!",
              b64["hotdog"][0], b64["hotdog"][1], b64["parrot"][0]]
    out = _ok(gated_host.exec("labelImages", window, rule="gW"))
    assert [r[0]["label"] if isinstance(r, list) else "error" for r in out] == [
        PARROT, PARROT, PARROT, PARROT, "error", HOT_DOG, HOT_DOG, PARROT,
    ]
    stats = _ok(gated_host.exec("pyaiStats"))["gate"]
    assert stats["threshold"] == DEFAULT_THRESHOLD
    # parrot run three times (the second and third confirm it), then reused; the hot
    # dog is a cut (run), its second shot the new reference (run); the last parrot a
    # cut again (run).
    assert _site(gated_host, "gW") == {"checked": 7, "reused": 1, "run": 6}
