"""Stochastic segmentation in data pipelines: PyTorch ``DataLoader`` and HF ``datasets``.

Subword regularisation needs a *different* segmentation of every text in every epoch, yet a
training run must be reproducible. probcraft's samplers take the random stream as an
argument, so the rule here is simple: text ``i`` in epoch ``e`` is segmented with stream
``(derive_seed(seed, e), i)``. Which worker process handles the item, how batches are split
and whether workers are forked or spawned cannot change the result, and a whole epoch equals
one call ``model.encode_batch(texts, alpha=..., seed=derive_seed(seed, e))``.

Nothing here imports torch or datasets; :class:`TokenizeDataset` is a plain map-style dataset
(``__len__`` / ``__getitem__`` / ``__getitems__``) that ``torch.utils.data.DataLoader``
accepts as is, and everything pickles (spawned workers receive the model as its bytes).

>>> import probcraft
>>> from probcraft.data import TokenizeDataset
>>> m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
>>> ds = TokenizeDataset(m, ["abab", "ba", "ab"], alpha=0.5, seed=7)
>>> ds.set_epoch(3)
>>> all(a.tolist() == b.tolist() for a, b in zip([ds[i] for i in range(3)], ds.epoch_ids(3)))
True
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import _core

if TYPE_CHECKING:  # pragma: no cover
    from .lattice import Text, Unigram

__all__ = ["EpochSampler", "HFTokenize", "PadCollate", "TokenizeDataset", "epoch_seed"]

Index = Union[int, tuple[int, int]]


def _int(value: Any, name: str) -> int:
    """``value`` as an exact int (``int``, numpy / torch integer scalars).

    ``operator.index`` rather than ``int()``: ``int(1.7)`` would silently truncate a float
    index, count or id to 1 instead of reporting the caller's mistake.
    """
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


def _u64(value: Any, name: str) -> int:
    """``value`` checked up front to be an integer in ``[0, 2**64)`` (seeds and epochs are
    u64 in the core: out of range they would only fail later, with a bare OverflowError,
    when the first item is fetched)."""
    v = _int(value, name)
    if not 0 <= v < 2**64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {v}")
    return v


def epoch_seed(seed: int, epoch: int) -> int:
    """The batch seed of ``epoch``: ``derive_seed(seed, epoch)``.

    >>> epoch_seed(1, 0) == epoch_seed(1, 0) != epoch_seed(1, 1)
    True
    """
    return int(_core.derive_seed(_u64(seed, "seed"), _u64(epoch, "epoch")))


def _runs(keys: list[tuple[int, int]]) -> Iterator[tuple[int, int, int, int]]:
    """Splits ``(epoch, index)`` keys into maximal runs of consecutive indices of one epoch:
    ``(position in keys, epoch, first index, length)``."""
    i = 0
    while i < len(keys):
        e, start = keys[i]
        j = i + 1
        while j < len(keys) and keys[j] == (e, start + (j - i)):
            j += 1
        yield i, e, start, j - i
        i = j


class TokenizeDataset:
    """A map-style dataset of sampled segmentations: item ``i`` is an int32 array of ids.

    Parameters
    ----------
    model:
        A :class:`probcraft.Unigram`.
    texts:
        Any sequence of ``str`` / ``bytes`` (a list, a numpy array of objects, an Arrow
        column converted with ``to_pylist``...). It is pickled into spawned workers.
    alpha:
        Sampling temperature (``None``: the deterministic Viterbi segmentation).
    seed:
        Base seed of the run; epoch ``e`` uses ``derive_seed(seed, e)``.
    num_threads:
        Threads per worker for the batched fetch (default 1: DataLoader workers already run
        in parallel). Safe in forked workers even after the parent used threads.

    Epochs: call :meth:`set_epoch` before each epoch (the usual ``DistributedSampler``
    pattern; works with ``persistent_workers=False``, the default), or index with
    ``(epoch, i)`` pairs from :class:`EpochSampler`, which also works with persistent workers.
    """

    def __init__(
        self,
        model: "Unigram",
        texts: Sequence["Text"],
        *,
        alpha: Optional[float] = 0.1,
        seed: int = 0,
        method: str = "perfect",
        num_threads: Optional[int] = 1,
    ) -> None:
        self.model = model
        self.texts = texts
        self.alpha = alpha
        self.seed = _u64(seed, "seed")
        self.method = method
        self.num_threads = num_threads
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose segmentations plain integer indices return."""
        self.epoch = _u64(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.texts)

    def _key(self, index: Index) -> tuple[int, int]:
        if isinstance(index, tuple):
            if len(index) != 2:
                raise TypeError(f"index must be an int or an (epoch, index) pair, got {index!r}")
            e, i = _int(index[0], "epoch"), _int(index[1], "index")
        else:
            e, i = self.epoch, _int(index, "index")
        n = len(self.texts)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index!r} out of range for {n} texts")
        return _u64(e, "epoch"), i

    def _encode(self, epoch: int, start: int, count: int) -> list[npt.NDArray[np.int32]]:
        texts = [self.texts[k] for k in range(start, start + count)]
        ids, off = self.model.encode_batch(
            texts,
            alpha=self.alpha,
            seed=epoch_seed(self.seed, epoch),
            stream_offset=start,
            num_threads=self.num_threads,
            method=self.method,
            flat=True,
        )
        return [ids[off[k] : off[k + 1]] for k in range(count)]

    def __getitem__(self, index: Index) -> npt.NDArray[np.int32]:
        e, i = self._key(index)
        return self._encode(e, i, 1)[0]

    def __getitems__(self, indices: Sequence[Index]) -> list[npt.NDArray[np.int32]]:
        """Batched fetch (used by ``DataLoader`` with automatic batching): consecutive
        indices go to ``encode_batch`` together, on ``num_threads`` threads."""
        keys = [self._key(i) for i in indices]
        out: list[Any] = [None] * len(keys)
        for pos, e, start, count in _runs(keys):
            out[pos : pos + count] = self._encode(e, start, count)
        return out

    def epoch_ids(self, epoch: int, num_threads: Optional[int] = None) -> list[npt.NDArray[np.int32]]:
        """Every item of ``epoch`` in one ``encode_batch`` call (for checks and for
        pre-tokenising a whole epoch)."""
        return self.model.encode_batch(  # type: ignore[no-any-return]
            list(self.texts),
            alpha=self.alpha,
            seed=epoch_seed(self.seed, epoch),
            num_threads=num_threads,
            method=self.method,
        )


class EpochSampler:
    """Yields ``(epoch, index)`` pairs, shuffled per epoch from ``(seed, epoch)``.

    Carrying the epoch in the index makes :class:`TokenizeDataset` correct with
    ``persistent_workers=True`` too (workers then never see ``set_epoch``). Use it as the
    DataLoader's ``sampler``; call :meth:`set_epoch` before each epoch.

    >>> s = EpochSampler(4, shuffle=False)
    >>> s.set_epoch(2)
    >>> list(s)
    [(2, 0), (2, 1), (2, 2), (2, 3)]
    """

    def __init__(self, n: int, *, shuffle: bool = True, seed: int = 0) -> None:
        n = _int(n, "n")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = n
        self.shuffle = shuffle
        self.seed = _u64(seed, "seed")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = _u64(epoch, "epoch")

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            # A permutation from probcraft's own streams: same order on every platform.
            keys = _core.Streams(epoch_seed(self.seed ^ 0x5EED, self.epoch)).uniform(0, self.n)
            order = np.argsort(keys, kind="stable")
        else:
            order = np.arange(self.n)
        return iter([(self.epoch, int(i)) for i in order])


class PadCollate:
    """``collate_fn`` padding id arrays into ``input_ids`` / ``attention_mask`` (int64
    tensors, ``(batch, longest)``) and ``lengths``; imports torch when called.

    >>> import numpy as np
    >>> b = PadCollate(pad_id=0)([np.array([5, 6], np.int32), np.array([7], np.int32)])
    >>> b["input_ids"].tolist(), b["attention_mask"].tolist()
    ([[5, 6], [7, 0]], [[1, 1], [1, 0]])
    """

    def __init__(self, pad_id: int = 0, max_length: Optional[int] = None) -> None:
        pad_id = _int(pad_id, "pad_id")
        if not -(2**63) <= pad_id < 2**63:  # the padded tensor is int64
            raise ValueError(f"pad_id must fit in int64, got {pad_id}")
        if max_length is not None:
            max_length = _int(max_length, "max_length")
            # A negative value would slice from the end (``ids[:-1]`` drops the last token)
            # rather than cap the length.
            if max_length < 0:
                raise ValueError(f"max_length must be >= 0 or None, got {max_length}")
        self.pad_id = pad_id
        self.max_length = max_length

    def __call__(self, batch: Sequence[npt.NDArray[np.integer]]) -> dict[str, Any]:
        import torch

        seqs = [np.asarray(b)[: self.max_length] for b in batch]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        width = int(lengths.max()) if len(seqs) else 0
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = s
            mask[r, : len(s)] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "lengths": torch.from_numpy(lengths),
        }


class HFTokenize:
    """A batched ``datasets.Dataset.map`` function (use ``with_indices=True``).

    Row ``i`` of the dataset is segmented with stream ``(seed, i)``, so the output equals
    ``model.encode_batch(all_texts, alpha=alpha, seed=seed)`` whatever ``num_proc`` and
    ``batch_size`` are. The object pickles to deterministic bytes (the model's vocabulary
    bytes and the settings), so ``datasets`` computes the same fingerprint in every run and
    reuses its cache.

    >>> import probcraft
    >>> m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
    >>> f = HFTokenize(m, alpha=None)
    >>> f({"text": ["ab", "ba"]}, [0, 1])["input_ids"]
    [[2], [1, 0]]
    """

    def __init__(
        self,
        model: "Unigram",
        *,
        alpha: Optional[float] = 0.1,
        seed: int = 0,
        text_column: str = "text",
        output_column: str = "input_ids",
        method: str = "perfect",
        num_threads: Optional[int] = 1,
    ) -> None:
        self.model = model
        self.alpha = alpha
        self.seed = _u64(seed, "seed")
        self.text_column = text_column
        self.output_column = output_column
        self.method = method
        self.num_threads = num_threads

    def __call__(self, batch: dict[str, Any], indices: Sequence[int]) -> dict[str, Any]:
        texts = batch[self.text_column]
        idx = [_int(i, "index") for i in indices]
        if len(idx) != len(texts):
            raise ValueError(f"{len(idx)} indices for {len(texts)} rows (use with_indices=True)")
        if idx and min(idx) < 0:  # row i uses stream (seed, i): streams are unsigned
            raise ValueError(f"indices must be >= 0, got {min(idx)}")
        out: list[Any] = [None] * len(idx)
        for pos, _, start, count in _runs([(0, i) for i in idx]):
            ids, off = self.model.encode_batch(
                texts[pos : pos + count],
                alpha=self.alpha,
                seed=self.seed,
                stream_offset=start,
                num_threads=self.num_threads,
                method=self.method,
                flat=True,
            )
            lst = ids.tolist()
            o = off.tolist()
            out[pos : pos + count] = [lst[o[k] : o[k + 1]] for k in range(count)]
        return {self.output_column: out}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            _hf_tokenize,
            (
                self.model.to_bytes(),
                self.alpha,
                self.seed,
                self.text_column,
                self.output_column,
                self.method,
                self.num_threads,
            ),
        )


def _hf_tokenize(
    model_bytes: bytes,
    alpha: Optional[float],
    seed: int,
    text_column: str,
    output_column: str,
    method: str,
    num_threads: Optional[int],
) -> HFTokenize:
    from .lattice import Unigram

    return HFTokenize(
        Unigram.from_bytes(model_bytes),
        alpha=alpha,
        seed=seed,
        text_column=text_column,
        output_column=output_column,
        method=method,
        num_threads=num_threads,
    )
