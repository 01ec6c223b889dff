"""Fingerprints see a one-bit change in any dtype, and need no copy of the weights."""

from __future__ import annotations

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_harness.core.fingerprint import changed, fingerprint


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.uint32, mx.int8])
@settings(max_examples=20, deadline=None)
@given(index=st.integers(0, 999), seed=st.integers(0, 2**16))
def test_a_single_changed_element_changes_the_digest(dtype, index, seed):
    mx.random.seed(seed)
    array = (mx.random.normal((1000,)) * 50).astype(dtype)
    bits = mx.view(array, {1: mx.uint8, 2: mx.uint16, 4: mx.uint32}[array.itemsize])
    altered = mx.where(mx.arange(1000) == index, mx.view(bits + 1, dtype), array)
    before, after = fingerprint({"w": array}), fingerprint({"w": altered})
    assert changed(before, after) == ["w"]


def test_identical_tensors_have_identical_digests():
    array = mx.arange(12, dtype=mx.float32).reshape(3, 4)
    assert changed(fingerprint({"w": array}), fingerprint({"w": mx.array(array)})) == []


def test_names_present_on_one_side_count_as_changed():
    array = mx.ones((2,))
    assert changed(fingerprint({"a": array}), fingerprint({"b": array})) == ["a", "b"]


def test_large_tensors_are_split_and_temporaries_stay_bounded():
    import lora_harness.core.fingerprint as fp

    array = mx.zeros((fp.CHUNK * 3 + 5,), dtype=mx.bfloat16)
    mx.eval(array)
    before = fingerprint({"w": array})
    tail_changed = mx.concatenate([array[:-1], mx.ones((1,), dtype=mx.bfloat16)])
    assert changed(before, fingerprint({"w": tail_changed})) == ["w"]
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    fingerprint({"w": array})
    # two uint32 temporaries of one piece at most, never a copy of the whole tensor
    assert mx.get_peak_memory() - base <= 2 * 4 * fp.CHUNK + 4096
