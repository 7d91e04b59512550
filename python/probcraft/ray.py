"""Tokenizing on a Ray cluster with ``ray.data.Dataset.map_batches``.

:class:`RayTokenizer` is a callable class: Ray builds one instance per actor from the
constructor arguments (the model travels as its vocabulary bytes, rebuilt lazily on first
use in each worker) and calls it on batches. Row ``i`` - the value of ``index_column`` - is
segmented with random stream ``(seed, i)``, so the result equals
``model.encode_batch(all_texts, alpha=alpha, seed=seed)`` line by line for any number of
workers, block layout or batch size. Output is an Arrow ``list<int32>`` column built from the
flat ids without copying them (see :mod:`probcraft.arrow`).

.. code-block:: python

    import ray, probcraft
    from probcraft.ray import RayTokenizer

    model = probcraft.Unigram.from_sentencepiece("spm.model")
    ds = ray.data.read_parquet("corpus/")          # columns: row_id, text
    out = ds.map_batches(
        RayTokenizer,
        fn_constructor_kwargs=RayTokenizer.kwargs(model, alpha=0.1, seed=2024),
        batch_format="pyarrow",
        concurrency=4,
    )

Without an index column (``index_column=None``) every batch is seeded from
``derive_seed(seed, hash of its texts)``: still deterministic, but not comparable to
``encode_batch``. Importing this module does not import Ray.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import _core

if TYPE_CHECKING:  # pragma: no cover
    from .lattice import Unigram

__all__ = ["RayTokenizer"]


class RayTokenizer:
    """Callable class for ``map_batches`` (``batch_format`` ``"pyarrow"``, ``"pandas"`` or
    ``"numpy"``); adds ``output_column`` holding each row's ids.

    >>> import probcraft, pyarrow as pa
    >>> m = probcraft.Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
    >>> tok = RayTokenizer(**RayTokenizer.kwargs(m, alpha=None))
    >>> tok(pa.table({"row_id": [0, 1], "text": ["ab", "ba"]}))["input_ids"].to_pylist()
    [[2], [1, 0]]
    """

    def __init__(
        self,
        model_bytes: bytes,
        *,
        alpha: Optional[float] = 0.1,
        seed: int = 0,
        text_column: str = "text",
        index_column: Optional[str] = "row_id",
        output_column: str = "input_ids",
        method: str = "perfect",
        num_threads: Optional[int] = 1,
    ) -> None:
        if not isinstance(model_bytes, (bytes, bytearray)):
            raise TypeError(
                "model_bytes must be bytes (use RayTokenizer.kwargs(model, ...) or "
                "model.to_bytes())"
            )
        self.model_bytes = bytes(model_bytes)
        self.alpha = alpha
        self.seed = int(seed)
        self.text_column = text_column
        self.index_column = index_column
        self.output_column = output_column
        self.method = method
        self.num_threads = num_threads
        self._model: Optional["Unigram"] = None

    @staticmethod
    def kwargs(model: "Unigram", **settings: Any) -> dict[str, Any]:
        """Constructor arguments for ``fn_constructor_kwargs``: the model's bytes plus
        ``settings``."""
        return {"model_bytes": model.to_bytes(), **settings}

    @property
    def model(self) -> "Unigram":
        if self._model is None:
            from .lattice import Unigram

            self._model = Unigram.from_bytes(self.model_bytes)
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        # Ship the bytes, never the rebuilt model (deterministic, and cheap to re-create).
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def _encode(self, texts: list[Any], rows: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids + offsets for the batch, row ``k`` from stream ``(seed, rows[k])``."""
        m = self.model
        common = dict(alpha=self.alpha, num_threads=self.num_threads, method=self.method)
        if rows is None:
            h = hashlib.blake2b(digest_size=8)
            for t in texts:
                b = t.encode("utf-8") if isinstance(t, str) else bytes(t)
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
            seed = int(_core.derive_seed(self.seed, int.from_bytes(h.digest(), "little")))
            return m.encode_batch(texts, seed=seed, flat=True, **common)  # type: ignore[no-any-return]
        if len(rows) and rows.min() < 0:
            raise ValueError(f"{self.index_column} must be >= 0, got {int(rows.min())}")
        return m.encode_batch(  # type: ignore[no-any-return]
            texts, seed=self.seed, indices=rows, flat=True, **common
        )

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from .arrow import from_flat

        if isinstance(batch, pa.Table):
            texts = batch.column(self.text_column).to_pylist()
            rows = self._rows(batch.column(self.index_column).to_numpy() if self.index_column else None)
            ids, off = self._encode(texts, rows)
            col = from_flat(ids, off)
            if self.output_column in batch.column_names:
                batch = batch.drop_columns([self.output_column])
            return batch.append_column(self.output_column, col)
        if isinstance(batch, dict):
            texts = list(batch[self.text_column])
            rows = self._rows(np.asarray(batch[self.index_column]) if self.index_column else None)
            ids, off = self._encode(texts, rows)
            out = dict(batch)
            col = np.empty(len(texts), dtype=object)
            for k in range(len(texts)):
                col[k] = ids[off[k] : off[k + 1]]
            out[self.output_column] = col
            return out
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            pd = None
        if pd is not None and isinstance(batch, pd.DataFrame):
            texts = batch[self.text_column].tolist()
            rows = self._rows(batch[self.index_column].to_numpy() if self.index_column else None)
            ids, off = self._encode(texts, rows)
            out_df = batch.copy()
            out_df[self.output_column] = [ids[off[k] : off[k + 1]] for k in range(len(texts))]
            return out_df
        raise TypeError(
            f"unsupported batch type {type(batch).__name__}: use batch_format='pyarrow', "
            "'pandas' or 'numpy'"
        )

    def _rows(self, rows: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if rows is None:
            return None
        if rows.dtype.kind not in "iu":
            raise TypeError(f"{self.index_column} must hold integers, got dtype {rows.dtype}")
        return rows.astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return (
            f"RayTokenizer(<{len(self.model_bytes)} model bytes>, alpha={self.alpha}, "
            f"seed={self.seed}, text_column={self.text_column!r}, "
            f"index_column={self.index_column!r})"
        )
