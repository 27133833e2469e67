"""Replays every input the fuzzer ever broke pyai with (tests/fuzz/regressions/),
and every seed, through the fuzz target's checks: a clean BadInput or a
well-formed result, quickly, never anything else."""

from __future__ import annotations

import pytest

from . import crafted, target

REGRESSIONS = sorted(p for p in crafted.REGRESSIONS.iterdir() if p.is_file() and p.suffix != ".md")


@pytest.fixture(scope="module")
def fuzz_classifier(models_dir):
    clf = target.make_classifier()
    yield clf
    clf.close()


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_regression(fuzz_classifier, path):
    target.run_one(fuzz_classifier, path.read_bytes())


def test_seeds_in_every_delivery(fuzz_classifier):
    outcomes = {}
    for i, seed in enumerate(crafted.seeds()):
        for mode in range(target.MODES):
            outcomes[(i, mode)] = target.run_one(fuzz_classifier, bytes([mode]) + seed)
    # The valid small images are labelled whichever way they arrive (mode 3, the
    # raw bytes as text, is never valid base64 for these).
    n_valid = len(crafted.sample_images())
    assert all(outcomes[(i, m)] == "ok" for i in range(n_valid) for m in (0, 1, 2, 4, 5, 6))
