"""Token ids as Apache Arrow list arrays (``pyarrow`` is an optional dependency).

:meth:`probcraft.Unigram.encode_batch` with ``flat=True`` returns the Arrow list layout
already: int32 ``ids`` plus int64 ``offsets`` where text ``i`` is
``ids[offsets[i]:offsets[i + 1]]``. :func:`from_flat` wraps those numpy buffers in an Arrow
array without copying the ids (the arrays stay alive as long as the Arrow buffers do):

* ``large=True`` gives a ``LargeListArray<int32>`` (int64 offsets): nothing is copied.
* ``large=False`` (default) gives a ``ListArray<int32>`` (the type most Arrow consumers,
  HF ``datasets`` included, use for token ids). Its offsets must be int32, so the offsets -
  one integer per text, not per token - are narrowed into a new buffer; the ids are shared.
  More than ``2**31 - 1`` ids in one array raise ``OverflowError`` (use ``large=True``).

>>> import probcraft
>>> from probcraft.arrow import encode_batch
>>> m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
>>> encode_batch(m, ["ab", "ba", ""]).to_pylist()
[[2], [1, 0], []]
>>> encode_batch(m, ["ab"], large=True).type
LargeListType(large_list<item: int32>)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # pragma: no cover - typing only; pyarrow stays an optional import
    import pyarrow as pa

    from .lattice import Text, Unigram

__all__ = ["encode_batch", "from_flat", "to_flat"]

_INT32_MAX = 2**31 - 1


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError as e:  # pragma: no cover - exercised only without pyarrow
        raise ImportError(
            "probcraft.arrow needs pyarrow: pip install pyarrow (or probcraft[test])"
        ) from e
    return pyarrow


def from_flat(
    ids: npt.NDArray[np.int32], offsets: npt.NDArray[np.integer], *, large: bool = False
) -> "pa.Array":
    """An Arrow ``ListArray<int32>`` (or ``LargeListArray`` with ``large=True``) viewing
    ``ids``, split at ``offsets`` (``len(offsets) == n_texts + 1``, ``offsets[0] == 0``,
    non-decreasing, ``offsets[-1] == len(ids)``).

    >>> import numpy as np
    >>> from_flat(np.array([5, 6, 7], np.int32), np.array([0, 2, 3])).to_pylist()
    [[5, 6], [7]]
    """
    pa = _pa()
    ids = np.asarray(ids)
    offsets = np.asarray(offsets)
    if ids.dtype != np.int32 or ids.ndim != 1:
        raise TypeError(f"ids must be a 1-d int32 array, got {ids.dtype} with shape {ids.shape}")
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise TypeError(f"offsets must be a 1-d integer array, got {offsets.dtype}")
    if offsets.size == 0 or offsets[0] != 0 or offsets[-1] != ids.size:
        raise ValueError(
            f"offsets must start at 0 and end at len(ids) = {ids.size}, got "
            f"{offsets[:1].tolist()}..{offsets[-1:].tolist()}"
        )
    if offsets.size > 1 and np.any(offsets[1:] < offsets[:-1]):
        raise ValueError("offsets must be non-decreasing")
    # A strided view cannot be an Arrow buffer; only then is ids copied.
    ids = np.ascontiguousarray(ids)
    if large:
        off = np.ascontiguousarray(offsets, dtype=np.int64)
        list_type = pa.large_list(pa.int32())
    else:
        if ids.size > _INT32_MAX:
            raise OverflowError(
                f"{ids.size} ids do not fit ListArray's int32 offsets; pass large=True"
            )
        off = np.ascontiguousarray(offsets, dtype=np.int32)
        list_type = pa.list_(pa.int32())
    n = off.size - 1
    # pa.py_buffer wraps the numpy memory through the buffer protocol and keeps the array
    # alive; Array.from_buffers assembles the list without touching the values.
    values = pa.Array.from_buffers(pa.int32(), ids.size, [None, pa.py_buffer(ids)])
    return pa.Array.from_buffers(list_type, n, [None, pa.py_buffer(off)], children=[values])


def to_flat(arr: "pa.Array") -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Inverse of :func:`from_flat` for a (large) list array of int32 without nulls: the
    flat ids (a zero-copy view when the array is not sliced) and int64 offsets from 0.

    >>> import numpy as np
    >>> ids, off = to_flat(from_flat(np.array([5, 6, 7], np.int32), np.array([0, 2, 3])))
    >>> ids.tolist(), off.tolist()
    ([5, 6, 7], [0, 2, 3])
    """
    pa = _pa()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise TypeError(f"expected a list array, got {arr.type}")
    if not pa.types.is_int32(arr.type.value_type):
        raise TypeError(f"expected int32 values, got {arr.type.value_type}")
    if arr.null_count:
        raise ValueError("list arrays with nulls have no flat ids + offsets form")
    off = arr.offsets.to_numpy()
    flat = arr.values.to_numpy(zero_copy_only=True)
    start, end = int(off[0]), int(off[-1])
    return flat[start:end], (off - start).astype(np.int64, copy=False)


def _arrow_texts(texts: Any) -> Any:
    """An Arrow string/binary (chunked) array as Python ``str``/``bytes`` items; anything else
    as it is. Iterating the Arrow array itself yields ``StringScalar`` items, which the batch
    reader refuses."""
    if not type(texts).__module__.startswith("pyarrow"):
        return texts
    pa = _pa()
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts
    t = texts.type
    kinds = ("is_string", "is_large_string", "is_string_view", "is_binary", "is_large_binary",
             "is_binary_view")
    if not any(getattr(pa.types, k, lambda _: False)(t) for k in kinds):
        raise TypeError(f"texts must be an Arrow string or binary array, got type {t}")
    return texts.to_pylist()


def encode_batch(
    model: "Unigram",
    texts: Sequence["Text"],
    *,
    alpha: Optional[float] = None,
    seed: Optional[int] = None,
    num_threads: Optional[int] = None,
    method: str = "perfect",
    stream_offset: int = 0,
    large: bool = False,
) -> "pa.Array":
    """:meth:`Unigram.encode_batch` returning an Arrow list array (see :func:`from_flat`).

    Same arguments and the same ids as ``model.encode_batch(texts, ..., flat=True)``;
    ``texts`` may also be an Arrow string or binary array (or chunked array), such as a
    column of a ``pyarrow.Table``.

    >>> import pyarrow as pa, probcraft
    >>> m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
    >>> encode_batch(m, pa.chunked_array([["ab"], ["ba", ""]])).to_pylist()
    [[2], [1, 0], []]
    """
    ids, offsets = model.encode_batch(
        _arrow_texts(texts),
        alpha=alpha,
        seed=seed,
        num_threads=num_threads,
        method=method,
        stream_offset=stream_offset,
        flat=True,
    )
    return from_flat(ids, offsets, large=large)
