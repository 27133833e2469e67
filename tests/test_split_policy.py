"""A lone frame split over the cores or run on one (pyai/split_policy.py): the policy's
choices from the call times it is given, and the classifier's two paths giving the
same answers."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from pyai.config import usable_cores
from pyai.split_policy import SplitPolicy

from .conftest import DEFAULT_MODEL


def run_calls(policy: SplitPolicy, n: int, times: Dict[bool, float]) -> List[bool]:
    """``n`` calls, each path taking the given seconds; the paths chosen."""
    chosen = []
    for _ in range(n):
        split = policy.choose()
        policy.record(split, times[split])
        chosen.append(split)
    return chosen


def test_learns_both_paths_first():
    policy = SplitPolicy(period=20, probes=4)
    chosen = run_calls(policy, 8, {True: 0.004, False: 0.005})
    assert chosen == [True] * 4 + [False] * 4


@pytest.mark.parametrize("split_s, single_s, expected", [
    (0.003, 0.005, True),  # an idle machine: splitting is clearly faster
    (0.007, 0.005, False),  # a busy one: the pool's worker waits for a core
    (0.0048, 0.005, False),  # within the margin: one core, which costs less CPU
])
def test_takes_the_faster_path_and_probes_the_other(split_s, single_s, expected):
    policy = SplitPolicy(period=20, probes=4)
    run_calls(policy, 8, {True: split_s, False: single_s})
    chosen = run_calls(policy, 240, {True: split_s, False: single_s})
    share = chosen.count(expected) / len(chosen)
    # 20 of every 24 calls on the faster path, 4 probing the other.
    assert share == pytest.approx(20 / 24, abs=0.02)
    assert chosen.count(not expected) > 0


def test_follows_the_machine_when_it_changes():
    policy = SplitPolicy(period=20, probes=4, keep=4)
    run_calls(policy, 8, {True: 0.003, False: 0.005})
    assert run_calls(policy, 24, {True: 0.003, False: 0.005}).count(True) >= 20
    # Someone else takes a core: splitting now loses; within a few probes the policy follows.
    run_calls(policy, 72, {True: 0.008, False: 0.005})
    assert run_calls(policy, 24, {True: 0.008, False: 0.005}).count(False) >= 20
    stats = policy.stats()
    assert stats["split_ms"] == pytest.approx(8.0) and stats["one_core_ms"] == pytest.approx(5.0)


@pytest.mark.skipif(usable_cores() < 2, reason="one usable core: nothing to split")
def test_classifier_paths_agree(models_dir: Path, labels_path: Path, images: Dict[str, bytes]):
    from pyai import Classifier

    with Classifier(model=str(models_dir / DEFAULT_MODEL), labels=str(labels_path)) as clf:
        assert clf.split_policy is not None and clf.one_core is not None and clf.one_core.threads == 1
        for name in ("cat_720p.jpg", "owl.jpg", "hot_dog.jpg"):
            data = images[name]
            split = clf._label_on(clf.model, clf.decode_bytes(data, split=True), None, None, None)
            single = clf._label_on(clf.one_core, clf.decode_bytes(data), None, None, None)
            assert split == single
        # Enough calls to go through both paths: every answer the same.
        answers = {str(clf.label(images["cat_720p.jpg"])) for _ in range(2 * clf.split_policy.probes + 2)}
        assert len(answers) == 1
        stats = clf.describe()["lone_frame"]
        assert stats["split_calls"] >= clf.split_policy.probes and stats["one_core_calls"] >= clf.split_policy.probes


def test_fixed_threads_keep_one_path(models_dir: Path, labels_path: Path):
    from pyai import Classifier

    with Classifier(model=str(models_dir / DEFAULT_MODEL), labels=str(labels_path), threads=2) as clf:
        assert clf.split_policy is None and clf.one_core is None
        assert "lone_frame" not in clf.describe()
