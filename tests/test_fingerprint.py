"""Fingerprints see any changed bit and any swap, in every dtype, and need no copy of the weights."""

from __future__ import annotations

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lora_harness.core.fingerprint as fp
from lora_harness.core.fingerprint import changed, fingerprint

_UINT = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32, 8: mx.uint64}


def _random(dtype, size: int, seed: int) -> mx.array:
    mx.random.seed(seed)
    if dtype == "packed":  # a 4-bit quantized weight: uint32 words of packed nibbles
        weight = mx.random.normal((8, 64 * max(1, size // 256)))
        return mx.quantize(weight, group_size=64, bits=4)[0]
    return (mx.random.normal((size,)) * 50).astype(dtype)


def _flip_bit(array: mx.array, index: int, bit: int) -> mx.array:
    uint = _UINT[array.itemsize]
    bits = mx.view(array.reshape(-1), uint)
    flipped = mx.where(mx.arange(bits.size) == index, bits ^ mx.array(1 << bit, dtype=uint), bits)
    return mx.view(flipped, array.dtype).reshape(array.shape)


def _python_digest(bits: mx.array) -> list[int]:
    values = bits.tolist()
    return [sum(values) % 2**64, sum(v * (2 * i + 1) for i, v in enumerate(values)) % 2**64]


DTYPES = [mx.float32, mx.float16, mx.bfloat16, mx.uint32, mx.int8, "packed"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(1, 3000),
    where=st.floats(0, 1),
    bit=st.integers(0, 63),
    seed=st.integers(0, 2**16),
)
def test_any_single_flipped_bit_changes_the_digest(dtype, size, where, bit, seed):
    array = _random(dtype, size, seed)
    index = min(int(where * array.size), array.size - 1)
    altered = _flip_bit(array, index, bit % (8 * array.itemsize))
    assert changed(fingerprint({"w": array}), fingerprint({"w": altered})) == ["w"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_flip_in_the_very_last_bit_of_the_last_element_is_seen(dtype):
    array = _random(dtype, 4099, seed=3)
    for bit in (0, 8 * array.itemsize - 1):
        altered = _flip_bit(array, array.size - 1, bit)
        assert changed(fingerprint({"w": array}), fingerprint({"w": altered})) == ["w"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 3000), a=st.floats(0, 1), b=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_swapping_two_different_elements_changes_the_digest(dtype, size, a, b, seed):
    array = _random(dtype, size, seed)
    flat = array.reshape(-1)
    i, j = (min(int(x * flat.size), flat.size - 1) for x in (a, b))
    if i == j or flat[i].item() == flat[j].item():
        return  # not a change
    order = mx.arange(flat.size)
    order = mx.where(order == i, j, mx.where(order == j, i, order))
    swapped = flat[order].reshape(array.shape)
    assert changed(fingerprint({"w": array}), fingerprint({"w": swapped})) == ["w"]


def test_swapping_two_tensors_changes_both_names():
    a, b = _random(mx.bfloat16, 100, 1), _random(mx.bfloat16, 100, 2)
    assert changed(fingerprint({"a": a, "b": b}), fingerprint({"a": b, "b": a})) == ["a", "b"]


@pytest.mark.parametrize("width", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [1, 7, 37, 100])
def test_the_sums_are_exactly_the_documented_formula_across_blocks_and_tails(
    monkeypatch, width, size
):
    monkeypatch.setattr(fp, "ROW", 4)  # tiny rows and blocks: several blocks plus a tail
    monkeypatch.setattr(fp, "MAX_ROWS", 3)
    mx.random.seed(size)
    raw = mx.random.randint(-(2**31), 2**31 - 1, (2 * size,), dtype=mx.int32)
    bits = mx.view(raw, _UINT[width])[:size]
    assert fp.reference_digest(bits).tolist() == _python_digest(bits)


def test_identical_tensors_have_identical_digests():
    array = mx.arange(12, dtype=mx.float32).reshape(3, 4)
    assert changed(fingerprint({"w": array}), fingerprint({"w": mx.array(array)})) == []


def test_names_present_on_one_side_count_as_changed():
    array = mx.ones((2,))
    assert changed(fingerprint({"a": array}), fingerprint({"b": array})) == ["a", "b"]


def test_extra_memory_stays_under_one_percent_of_the_weights():
    arrays = {"w": mx.zeros((1 << 25,), dtype=mx.bfloat16), "norm": mx.ones((896,))}
    mx.eval(arrays)
    weight_bytes = sum(a.nbytes for a in arrays.values())
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    fingerprint(arrays)
    assert mx.get_peak_memory() - base <= weight_bytes // 100


def _mixed_tensors() -> dict[str, mx.array]:
    """More tensors than a kernel group, in sizes and dtypes that take both paths."""
    tensors = {f"w{i}": _random(mx.bfloat16, 2 * (i % 9) + 2, i) for i in range(70)}
    tensors |= {"odd_int8": _random(mx.int8, 7, 1), "packed": _random("packed", 300, 2)}
    return tensors


def test_kernel_groups_give_each_name_its_own_digest(monkeypatch):
    """The grouping bookkeeping (sort by size, pad the last launch, map rows back to names).

    The kernel runs only on a GPU; here a stand-in computes each group's rows with the
    reference and fills padding rows with garbage that must never reach a name.
    """
    from lora_harness.core import fingerprint_kernels as kernels

    def reference_group(words):
        rows = [fp.reference_digest(bits) for bits in words]
        garbage = mx.array([0xDEAD, 0xBEEF], dtype=mx.uint64)
        return mx.stack(rows + [garbage] * (kernels.GROUP - len(rows)))

    tensors = _mixed_tensors()
    expected = fingerprint(tensors)
    launches = []
    monkeypatch.setattr(kernels, "available", lambda reference: True)
    monkeypatch.setattr(
        kernels, "digest_group", lambda w: launches.append(len(w)) or reference_group(w)
    )
    assert fingerprint(tensors) == expected
    assert launches == [32, 32, 7]  # 71 uint32 tensors; the odd-sized int8 takes the ops path


@pytest.mark.skipif(
    not mx.metal.is_available() and not (hasattr(mx, "cuda") and mx.cuda.is_available()),
    reason="needs a GPU (Metal or CUDA)",
)
def test_the_gpu_kernel_agrees_with_the_reference_on_every_tensor(monkeypatch):
    from lora_harness.core import fingerprint_kernels as kernels

    tensors = _mixed_tensors()
    on_kernel = fingerprint(tensors)
    assert kernels.BACKEND.endswith("kernel"), kernels.BACKEND
    monkeypatch.setattr(kernels, "BACKEND", "mlx ops (forced by the test)")
    assert fingerprint(tensors) == on_kernel
