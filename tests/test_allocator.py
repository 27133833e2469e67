"""pyai/allocator.py: the plugin process's glibc malloc setting is applied on glibc,
skipped when configured off, and a no-op with another C library."""

from __future__ import annotations

import os
from typing import List, Tuple

import pytest

from pyai import allocator
from pyai.config import load_config
from pyai.errors import ModelError


class FakeGlibc:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad, 0))
        return 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeGlibc:
    lib = FakeGlibc()
    monkeypatch.setattr(allocator, "_libc", lib)
    return lib


def test_the_threshold_is_fixed_with_mallopt(fake: FakeGlibc) -> None:
    assert allocator.fix_mmap_threshold(128) is True
    assert fake.calls == [("mallopt", -3, 128 * 1024)]  # M_MMAP_THRESHOLD, bytes


def test_zero_leaves_malloc_alone(fake: FakeGlibc) -> None:
    assert allocator.fix_mmap_threshold(0) is False
    assert fake.calls == []


def test_another_c_library_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_glibc(name: str) -> str:
        raise ValueError("unrecognized configuration name")  # what musl and macOS answer

    monkeypatch.setattr(allocator, "_libc", allocator._UNSET)
    monkeypatch.setattr(os, "confstr", not_glibc)
    assert allocator.glibc() is None
    assert allocator.fix_mmap_threshold(128) is False
    assert allocator.set_option("arena_max", 2) is False
    assert allocator.trim() is False


def test_the_real_glibc_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_libc", allocator._UNSET)
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        pytest.skip("not glibc")
    assert allocator.glibc() is not None
    assert allocator.fix_mmap_threshold(128) is True  # glibc's own starting value


def test_configurable_and_defeatable() -> None:
    assert load_config(None, env={}).malloc_mmap_threshold_kb == 128
    assert load_config(None, env={"PYAI_MALLOC_MMAP_THRESHOLD_KB": "0"}).malloc_mmap_threshold_kb == 0
    with pytest.raises(ModelError):
        load_config(None, env={}, malloc_mmap_threshold_kb=-1)
