"""Arrow list arrays from encode_batch's flat output, without copying the ids."""

from __future__ import annotations

import numpy as np
import pytest

import probcraft
from probcraft import _toy

pa = pytest.importorskip("pyarrow")
from probcraft import arrow  # noqa: E402


@pytest.fixture(scope="module")
def model() -> probcraft.Unigram:
    return _toy.model()


def _addr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


@pytest.mark.parametrize("large", [False, True])
def test_from_flat_shares_the_ids_buffer(model: probcraft.Unigram, large: bool) -> None:
    texts = _toy.corpus(200, seed=3)
    ids, off = model.encode_batch(texts, alpha=0.2, seed=11, flat=True)
    arr = arrow.from_flat(ids, off, large=large)
    assert arr.type == (pa.large_list(pa.int32()) if large else pa.list_(pa.int32()))
    assert len(arr) == len(texts) and arr.null_count == 0
    # The Arrow values buffer is the numpy array's memory: no copy of the ids.
    assert arr.values.buffers()[1].address == _addr(ids)
    if large:
        assert arr.buffers()[1].address == _addr(off)  # int64 offsets shared as well
    expected = model.encode_batch(texts, alpha=0.2, seed=11)
    assert arr.to_pylist() == [e.tolist() for e in expected]
    # Round trip back to numpy is zero-copy too.
    ids2, off2 = arrow.to_flat(arr)
    assert _addr(ids2) == _addr(ids)
    np.testing.assert_array_equal(off2, off)


def test_buffer_outlives_the_numpy_arrays(model: probcraft.Unigram) -> None:
    ids, off = model.encode_batch(["the token", "sampling"], flat=True)
    arr = arrow.from_flat(ids, off)
    expected = arr.to_pylist()
    del ids, off
    import gc

    gc.collect()
    assert arr.to_pylist() == expected


def test_encode_batch_wrapper_matches_and_offsets(model: probcraft.Unigram) -> None:
    texts = _toy.corpus(50, seed=5)
    whole = arrow.encode_batch(model, texts, alpha=0.3, seed=2, num_threads=2)
    part = arrow.encode_batch(model, texts[20:], alpha=0.3, seed=2, stream_offset=20)
    assert whole.to_pylist()[20:] == part.to_pylist()
    assert pa.table({"input_ids": whole}).column(0).to_pylist() == whole.to_pylist()
    empty = arrow.encode_batch(model, [])
    assert len(empty) == 0 and empty.type == pa.list_(pa.int32())


def test_sliced_array_to_flat(model: probcraft.Unigram) -> None:
    ids, off = model.encode_batch(_toy.corpus(10), flat=True)
    arr = arrow.from_flat(ids, off).slice(3, 4)
    i2, o2 = arrow.to_flat(arr)
    assert o2[0] == 0 and o2[-1] == len(i2)
    assert [i2[o2[k] : o2[k + 1]].tolist() for k in range(4)] == arr.to_pylist()


def test_bad_input_raises() -> None:
    ok = np.array([1, 2, 3], np.int32)
    with pytest.raises(TypeError, match="int32"):
        arrow.from_flat(ok.astype(np.int64), np.array([0, 3]))
    with pytest.raises(ValueError, match="start at 0 and end"):
        arrow.from_flat(ok, np.array([0, 2]))
    with pytest.raises(ValueError, match="start at 0"):
        arrow.from_flat(ok, np.array([], np.int64))
    with pytest.raises(ValueError, match="non-decreasing"):
        arrow.from_flat(ok, np.array([0, 3, 1, 3]))
    with pytest.raises(TypeError, match="list array"):
        arrow.to_flat(pa.array([1, 2]))
    with pytest.raises(TypeError, match="int32 values"):
        arrow.to_flat(pa.array([[1]], pa.list_(pa.int64())))
    with pytest.raises(ValueError, match="nulls"):
        arrow.to_flat(pa.array([[1], None], pa.list_(pa.int32())))


def test_strided_ids_are_accepted() -> None:
    ids = np.arange(10, dtype=np.int32)[::2]
    arr = arrow.from_flat(ids, np.array([0, 2, 5]))
    assert arr.to_pylist() == [[0, 2], [4, 6, 8]]


def test_encode_batch_arrow_option_shares_the_ids_buffer() -> None:
    pa = pytest.importorskip("pyarrow")
    m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
    texts = ["ab", "ba", "", "abab"]
    arr = m.encode_batch(texts, alpha=0.5, seed=3, arrow=True)
    assert arr.type == pa.list_(pa.int32())
    assert arr.to_pylist() == [r.tolist() for r in m.encode_batch(texts, alpha=0.5, seed=3)]
    large = m.encode_batch(texts, alpha=0.5, seed=3, arrow="large")
    assert large.type == pa.large_list(pa.int32())
    assert large.to_pylist() == arr.to_pylist()


def test_encode_batch_takes_arrow_string_columns():
    # Iterating an Arrow array yields StringScalar items, which the batch reader refused.
    m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
    encode_batch = arrow.encode_batch
    want = encode_batch(m, ["ab", "ba", "", "a"]).to_pylist()
    for col in (
        pa.array(["ab", "ba", "", "a"]),
        pa.array(["ab", "ba", "", "a"], pa.large_string()),
        pa.array([b"ab", b"ba", b"", b"a"]),
        pa.chunked_array([["ab"], ["ba", "", "a"]]),
        pa.table({"text": ["ab", "ba", "", "a"]}).column("text"),
    ):
        assert encode_batch(m, col).to_pylist() == want
    with pytest.raises(TypeError, match="string or binary"):
        encode_batch(m, pa.array([1, 2]))
