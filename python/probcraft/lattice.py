"""Unigram segmentation lattices: exact Viterbi, sampling, k-best, marginals and entropy.

A unigram tokenizer gives each vocabulary piece a log-probability ``v``; a text's
segmentations form a lattice and ``p_α(w) ∝ exp(α·Σv)``. :class:`Unigram` loads SentencePiece,
HF ``tokenizer.json`` (Unigram), BytePiece and jieba vocabularies or a plain piece list, and
computes everything over that lattice exactly:

>>> from probcraft import Unigram
>>> m = Unigram.from_pieces([("a", -1.0), ("b", -1.5), ("ab", -2.0), ("abc", -4.5), ("c", -2.0)])
>>> m.encode_as_pieces("abc")
['ab', 'c']
>>> m.encode("abc").tolist()
[2, 4]
>>> [(ids.tolist(), round(s, 3)) for ids, s in m.nbest("abc", 3)]
[([2, 4], -4.0), ([3], -4.5), ([0, 1, 4], -4.5)]
>>> round(m.log_prob("abc", [2, 4], alpha=1.0), 4)
-0.7944
>>> m.encode("abcabc", alpha=0.5, seed=7).tolist() == m.encode("abcabc", alpha=0.5, seed=7).tolist()
True

Sampling methods: ``"perfect"`` (default) is the corrected single-pass reservoir rule and
samples ``p_α`` exactly; ``"ffbs"`` (forward filtering, backward sampling, SentencePiece's
``nbest_size=-1``) samples the same distribution; ``"viterbi-sampling"`` is the historic rule
from the original "Viterbi Sampling" post and is **biased** (with three equal candidates the
last one wins half the time) — kept only for reproducing old results. ``alpha=0`` samples
uniformly over all segmentations (unlike HF ``tokenizers``, where it means deterministic).
Guidance: ``alpha=0.1`` is very random; many use 0.2–0.5. ``alpha`` is at most ``1e6``: beyond
that, log-probabilities (differences of sums of ``α·score``) lose their precision in double
arithmetic, and the distribution is the Viterbi path's in all but near-ties anyway.

Seeds: ``seed=None`` draws fresh OS entropy per call; with a seed, batch item ``i`` uses the
random stream ``(seed, stream_offset + i)``, so results never depend on thread count, batch
split, pickling or worker process; ``encode(t, seed=s)`` equals item 0 of
``encode_batch([t], seed=s)``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from . import _core

if TYPE_CHECKING:
    # Type names only: the extension builds every array (and imports numpy when it loads).
    import numpy as np
    import numpy.typing as npt

    IdsLike = Union[Sequence[int], npt.NDArray[np.integer]]
else:
    IdsLike = Any

Text = Union[str, bytes, bytearray]
Source = Union[str, "os.PathLike[str]", bytes, bytearray]

__all__ = ["Unigram"]


def _overflow(e: OverflowError, **args: Any) -> BaseException:
    """The error for an integer argument out of the native range (pyo3's ``OverflowError``
    names no argument): a ``ValueError`` naming the first one out of ``[0, 2**64)``, else
    ``e`` itself. Only runs after a call failed, so valid calls pay nothing."""
    for name, v in args.items():
        if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v < 2**64:
            return ValueError(f"{name} must be an int in [0, 2**64), got {v}")
    return e


class Unigram:
    """An immutable unigram segmentation model (thread-safe; pickles to deterministic bytes).

    Build it with one of the ``from_*`` constructors. Positions reported by
    :meth:`marginals` and :meth:`prefix_candidates` are byte offsets into
    :meth:`normalize`'s output (the text the lattice is built on: SentencePiece's normaliser,
    dummy prefix and ``▁`` for spaces, or the raw bytes for byte-level models).

    Text arguments accept ``str`` or UTF-8 ``bytes``; invalid UTF-8 raises ``ValueError``
    naming the byte offset (byte-level models accept any bytes).
    """

    __slots__ = ("_m",)

    def __init__(self, core: _core.Unigram) -> None:
        if not isinstance(core, _core.Unigram):
            raise TypeError("use Unigram.from_sentencepiece / from_pieces / ... to build a model")
        self._m = core

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_sentencepiece(cls, path_or_bytes: Source) -> "Unigram":
        """Loads a SentencePiece ``.model`` (path or its bytes)."""
        return cls(_core.Unigram.from_sentencepiece(path_or_bytes))

    @classmethod
    def from_hf_json(cls, path_or_bytes: Source) -> "Unigram":
        """Loads a HF ``tokenizer.json`` with a Unigram model (path or its bytes).

        Viterbi then follows HF tokenizers' arithmetic (SentencePiece's algorithm summed in
        float64, UNK at ``min score − 10``), so ids equal ``Tokenizer.encode``'s, also on the
        near-ties where float32 SentencePiece decides otherwise; added tokens HF matches in
        the raw text (special ones, ``<extra_id_0>``, ...) are cut out first, as HF does, by
        every ``encode*`` method. Not reproduced: HF's ``Strip`` removing trailing whitespace
        other than spaces, ``single_word`` / normalised added tokens, and added tokens in the
        lattice methods (``nbest``, ``sample``, ...); see ``docs/limits.md``."""
        return cls(_core.Unigram.from_hf_json(path_or_bytes))

    @classmethod
    def from_bytepiece(cls, path_or_bytes: Source) -> "Unigram":
        """Loads a BytePiece JSON model; the lattice runs over raw bytes."""
        return cls(_core.Unigram.from_bytepiece(path_or_bytes))

    @classmethod
    def from_jieba_dict(cls, path_or_bytes: Source) -> "Unigram":
        """Loads a jieba ``dict.txt``; Viterbi then equals ``jieba.cut(text, HMM=False)``
        on runs of Chinese characters (jieba pre-splits other text itself)."""
        return cls(_core.Unigram.from_jieba_dict(path_or_bytes))

    @classmethod
    def from_pieces(
        cls,
        pieces: Iterable[tuple[Union[str, bytes], float]],
        *,
        unk: Optional[int] = None,
        byte_level: bool = False,
    ) -> "Unigram":
        """A model from ``(piece, log_prob)`` pairs (ids are list positions), no normalisation.

        ``unk`` names the index of a piece to use as the UNK piece: characters no
        single-character piece covers then become UNK tokens (scored ``min_score − 10``, like
        SentencePiece). Without it, such text raises ``ValueError``.

        >>> m = Unigram.from_pieces([("<unk>", 0.0), ("a", -1.0)], unk=0)
        >>> m.encode_as_pieces("axya")
        ['a', 'xy', 'a']
        """
        return cls(_core.Unigram.from_pieces(list(pieces), unk=unk, byte_level=byte_level))

    @staticmethod
    def train(corpus: Any, vocab_size: int, **kwargs: Any) -> "Unigram":
        """Trains a model; see :func:`probcraft.train.train` for every option.

        >>> m = Unigram.train(["the cat sat on the mat"] * 50, 20, progress=False)
        >>> m.vocab_size
        20
        """
        from .train import train

        return train(corpus, vocab_size, **kwargs)

    def to_sentencepiece(self) -> bytes:
        """A SentencePiece ``.model`` (protobuf) the ``sentencepiece`` wheel loads and encodes
        exactly as this model does. Byte-level models cannot be expressed and raise
        ``ValueError``."""
        return _core._vocab_to_sentencepiece(self.to_bytes())

    def info(self) -> dict[str, Any]:
        """Size, special ids, normaliser settings and piece-type counts of the model."""
        data = self.to_bytes()
        info: dict[str, Any] = {"vocab_size": self.vocab_size}
        info.update(_core._load_vocab_info("probcraft", data))
        names = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused",
                 6: "byte"}
        counts: dict[str, int] = {}
        scores = []
        for _, score, kind in _core._load_vocab("probcraft", data):
            name = names.get(kind, str(kind))
            counts[name] = counts.get(name, 0) + 1
            if kind == 1:
                scores.append(score)
        info["piece_types"] = counts
        if scores:
            info["normal_score_range"] = [min(scores), max(scores)]
        info["serialized_bytes"] = len(data)
        return info

    @classmethod
    def from_bytes(cls, data: bytes) -> "Unigram":
        """Inverse of :meth:`to_bytes` (probcraft's own vocabulary format)."""
        return cls(_core.Unigram.from_bytes(data))

    def to_bytes(self) -> bytes:
        """Deterministic bytes of the vocabulary (what pickling stores)."""
        return self._m.to_bytes()

    # ----------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return self._m.vocab_size

    @property
    def unk_id(self) -> Optional[int]:
        return self._m.unk_id

    @property
    def byte_level(self) -> bool:
        return self._m.byte_level

    @property
    def source(self) -> str:
        """Where the vocabulary came from: ``sentencepiece``, ``hf``, ``bytepiece``, ..."""
        return self._m.source

    def __len__(self) -> int:
        return self._m.vocab_size

    def id_to_piece(self, i: int) -> Union[str, bytes]:
        """The piece string of id ``i`` (``bytes`` for byte-level models)."""
        try:
            return self._m.id_to_piece(i)
        except OverflowError:
            raise self._id_range(i) from None

    def piece_to_id(self, piece: Union[str, bytes]) -> Optional[int]:
        """The id of ``piece``, or ``None`` when it is not in the vocabulary."""
        return self._m.piece_to_id(piece)

    def score(self, i: int) -> float:
        """The stored log-probability of id ``i``."""
        try:
            return self._m.score(i)
        except OverflowError:
            raise self._id_range(i) from None

    def _id_range(self, i: int) -> ValueError:
        # The native message, for ids too large for a C long too.
        return ValueError(f"id {i} is out of range for a vocabulary of {len(self)} pieces")

    def normalize(self, text: Text) -> Union[str, bytes]:
        """The text the lattice is built on."""
        return self._m.normalize(text)

    # ----------------------------------------------------------------- encoding
    def encode(
        self,
        text: Text,
        *,
        alpha: Optional[float] = None,
        seed: Optional[int] = None,
        method: str = "perfect",
    ) -> npt.NDArray[np.int32]:
        """Token ids: the Viterbi path (``alpha=None``) or a sample from ``p_α``.

        Empty text gives an empty array. Consecutive unknown characters merge into one UNK
        id; with SentencePiece ``byte_fallback`` they become ``<0xXX>`` byte pieces. jieba
        dictionaries have no UNK piece: a character no word covers is its own token, id -1
        (its surface is in :meth:`encode_as_pieces`).
        """
        try:
            return self._m.encode(text, alpha=alpha, seed=seed, method=method)
        except OverflowError as e:
            raise _overflow(e, seed=seed) from None

    def encode_as_pieces(
        self,
        text: Text,
        *,
        alpha: Optional[float] = None,
        seed: Optional[int] = None,
        method: str = "perfect",
    ) -> list[Any]:
        """Like :meth:`encode` but returns the pieces' surface strings."""
        try:
            return self._m.encode_as_pieces(text, alpha=alpha, seed=seed, method=method)
        except OverflowError as e:
            raise _overflow(e, seed=seed) from None

    def encode_with_spans(
        self,
        text: Text,
        *,
        alpha: Optional[float] = None,
        seed: Optional[int] = None,
        method: str = "perfect",
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """:meth:`encode` with where each token came from: ``(ids, spans)``, ``spans`` an
        ``(n, 2)`` int64 array of ``[start, end)`` offsets into ``text`` — characters for a
        ``str`` (so ``text[start:end]`` is the token's source, as HF tokenizers'
        ``return_offsets_mapping``), bytes for bytes-like input (SentencePiece's
        ``begin``/``end``).

        The ids are those of :meth:`encode` with the same arguments (the same sample for the
        same seed). Spans follow the normaliser's alignment as SentencePiece reports it: the
        dummy-prefix ``▁`` and collapsed spaces belong to the token that starts with them, a
        character the normaliser expanded (``ﬁ`` → ``fi``) belongs to the token holding its
        last part, merged UNKs span every character they cover, and the byte pieces of a
        byte-fallback character all start at it, only the last one ending after it. (A
        byte-level model can cut a ``str`` character: an offset inside it counts it as begun.)

        >>> m = Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5), ("é", -1.0)])
        >>> ids, spans = m.encode_with_spans("abé")
        >>> ids.tolist(), spans.tolist()
        ([2, 3], [[0, 2], [2, 3]])
        >>> m.encode_with_spans("abé".encode())[1].tolist()   # bytes in, byte offsets out
        [[0, 2], [2, 4]]
        """
        try:
            return self._m.encode_with_spans(text, alpha=alpha, seed=seed, method=method)
        except OverflowError as e:
            raise _overflow(e, seed=seed) from None

    def encode_batch(
        self,
        texts: Sequence[Text],
        *,
        alpha: Optional[float] = None,
        seed: Optional[int] = None,
        num_threads: Optional[int] = None,
        method: str = "perfect",
        flat: bool = False,
        stream_offset: int = 0,
        arrow: Union[bool, str] = False,
        indices: Optional[Sequence[int]] = None,
    ) -> Any:
        """Encodes many texts in parallel with the GIL released.

        Returns a list of int32 arrays, or with ``flat=True`` the Arrow-style pair
        ``(ids, offsets)`` where item ``i`` is ``ids[offsets[i]:offsets[i + 1]]``. Item ``i``
        draws from stream ``(seed, stream_offset + i)``: pass ``stream_offset`` when
        encoding a batch in pieces to reproduce the whole. ``arrow=True`` returns a
        ``pyarrow.ListArray<int32>`` sharing the ids buffer (``arrow="large"``: a
        ``LargeListArray`` sharing the offsets too); see :mod:`probcraft.arrow`.
        ``indices`` gives each text its own stream, ``(seed, indices[i])`` (shuffled or
        filtered rows of a larger corpus); it replaces ``stream_offset``.

        >>> m = Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5)])
        >>> ids, offsets = m.encode_batch(["ab", "ba", ""], flat=True)
        >>> ids.tolist(), offsets.tolist()
        ([2, 1, 0], [0, 1, 3, 3])
        """
        if arrow not in (False, True, "large") or isinstance(arrow, int) and not isinstance(
            arrow, bool
        ):
            raise ValueError(f"arrow must be False, True or 'large', got {arrow!r}")
        kw = dict(alpha=alpha, seed=seed, num_threads=num_threads, method=method)
        try:
            return self._encode_batch(texts, kw, flat, stream_offset, arrow, indices)
        except OverflowError as e:
            raise _overflow(
                e, seed=seed, num_threads=num_threads, stream_offset=stream_offset
            ) from None

    def _encode_batch(
        self,
        texts: Sequence[Text],
        kw: dict[str, Any],
        flat: bool,
        stream_offset: int,
        arrow: Union[bool, str],
        indices: Optional[Sequence[int]],
    ) -> Any:
        if indices is None and not flat and not arrow:
            # Each finished chunk's arrays are made between the chunks this thread encodes.
            return self._m.encode_batch_list(texts, stream_offset=stream_offset, **kw)
        if indices is None:
            ids, offsets = self._m.encode_batch_flat(texts, stream_offset=stream_offset, **kw)
        else:
            ids, offsets = self._encode_indexed(texts, indices, kw)
        if arrow:
            from .arrow import from_flat

            return from_flat(ids, offsets, large=arrow == "large")
        if flat:
            return ids, offsets
        bounds = offsets.tolist()  # Python ints: no numpy scalar per slice bound
        return [ids[a:b] for a, b in zip(bounds, bounds[1:])]

    def _encode_indexed(
        self, texts: Sequence[Text], indices: Sequence[int], kw: dict[str, Any]
    ) -> tuple[Any, Any]:
        # Indices are mostly consecutive: one native call per run of consecutive indices.
        import numpy as np

        raw = np.asarray(indices)
        if raw.ndim != 1 or not (raw.size == 0 or np.issubdtype(raw.dtype, np.integer)):
            # A cast would truncate 0.5 to 0, parse '1' and flatten nested lists silently.
            raise TypeError(
                f"indices must be a 1-D sequence of ints, got {raw.ndim}-D {raw.dtype} values"
            )
        if raw.dtype == np.uint64 and raw.size and int(raw.max()) >= 2**63:
            raise ValueError(f"indices must be < 2**63, got {int(raw.max())}")
        idx = raw.astype(np.int64)
        texts = list(texts)
        if len(idx) != len(texts):
            raise ValueError(f"indices has {len(idx)} entries for {len(texts)} texts")
        if len(idx) and idx.min() < 0:
            raise ValueError(f"indices must be >= 0, got {int(idx.min())}")
        if kw.get("seed") is None and kw.get("alpha") is not None:
            kw = dict(kw, seed=int.from_bytes(os.urandom(8), "little"))
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks]).astype(np.int64)
        ends = np.concatenate([breaks, [len(texts)]]).astype(np.int64)
        parts = [
            self._m.encode_batch_flat(texts[s:e], stream_offset=int(idx[s]), **kw)
            for s, e in zip(starts, ends)
            if e > s
        ]
        if len(parts) == 1:
            return parts[0]
        offsets = np.zeros(len(texts) + 1, np.int64)
        if parts:
            np.cumsum(np.concatenate([np.diff(p[1]) for p in parts]), out=offsets[1:])
        ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
        return ids, offsets

    def decode(self, ids: IdsLike) -> str:
        """Text from ids. SentencePiece models decode as ``sentencepiece`` 0.2.3 does, for
        any id sequence: ``▁`` → space, the first piece's leading ``▁`` dropped (with
        ``remove_extra_whitespaces``, every leading ``▁`` until text appears), UNK →
        ``" ⁇ "``, control pieces dropped, each run of byte pieces read as UTF-8 with every
        invalid byte a U+FFFD. Other models concatenate their pieces. Ids out of range raise
        ``ValueError``.

        >>> m = Unigram.from_pieces([("a", -1.0), ("b", -1.0)])
        >>> m.decode([0, 1, 0])
        'aba'
        """
        return self._m.decode(ids)

    def decode_bytes(self, ids: IdsLike) -> bytes:
        """Like :meth:`decode` without the final UTF-8 decoding (for byte-level models)."""
        return self._m.decode_bytes(ids)

    # ----------------------------------------------------------------- distributions
    def nbest(self, text: Text, k: int) -> list[tuple[npt.NDArray[np.int32], float]]:
        """The ``k`` best segmentations with their scores ``Σ v``, best first; exact for any
        text length (no agenda cap). ``k=0`` returns ``[]``; fewer than ``k`` results when the
        text has fewer segmentations."""
        try:
            return self._m.nbest(text, k)
        except OverflowError as e:
            raise _overflow(e, k=k) from None

    def sample(
        self,
        text: Text,
        n: int,
        *,
        alpha: float,
        seed: Optional[int] = None,
        replace: bool = True,
        method: str = "perfect",
    ) -> list[tuple[Any, ...]]:
        """``n`` segmentations drawn from ``p_α``.

        ``replace=True``: independent draws ``(ids, log_prob)``, draw ``i`` from stream
        ``(seed, i)``. ``replace=False``: up to ``n`` distinct segmentations (Gumbel-top-k by
        stochastic beam search), each ``(ids, log_prob, inclusion_probability)`` with
        inclusion probability ``1 − exp(−exp(log_prob − κ))`` for the ``(n+1)``-th perturbed
        value ``κ`` (1.0 when the text has at most ``n`` segmentations).
        """
        try:
            return self._m.sample(text, n, alpha=alpha, seed=seed, replace=replace, method=method)
        except OverflowError as e:
            raise _overflow(e, n=n, seed=seed) from None

    def log_partition(self, text: Text, alpha: float = 1.0) -> float:
        """``log Z_α = log Σ_w exp(α·score(w))``; at ``alpha=0`` the log of the number of
        segmentations."""
        return self._m.log_partition(text, alpha)

    def entropy(self, text: Text, alpha: float = 1.0) -> float:
        """Entropy of ``p_α`` in nats (SentencePiece's ``calculate_entropy``)."""
        return self._m.entropy(text, alpha)

    def log_prob(self, text: Text, ids: IdsLike, alpha: float = 1.0) -> float:
        """``log p_α`` of the segmentation given by ``ids``; ``ValueError`` when ``ids`` is
        not a segmentation of the text."""
        return self._m.log_prob(text, ids, alpha)

    def marginals(self, text: Text, alpha: float = 1.0) -> dict[str, Any]:
        """Expected piece counts, edge and boundary marginals, expected token count.

        Keys: ``log_z``, ``entropy``, ``expected_tokens``, ``expected_score``,
        ``piece_ids`` / ``piece_counts`` (expected count of each piece with non-zero mass),
        ``boundary`` (probability of a token boundary at each byte offset of ``normalized``),
        ``edge_start`` / ``edge_end`` / ``edge_id`` / ``edge_prob``, and ``normalized``.

        >>> m = Unigram.from_pieces([("a", -1.0), ("aa", -1.0)])
        >>> r = m.marginals("aa", alpha=1.0)
        >>> [round(float(p), 4) for p in r["boundary"]]
        [1.0, 0.2689, 1.0]
        """
        return self._m.marginals(text, alpha)

    def prefix_candidates(
        self, text: Text, alpha: float = 1.0
    ) -> list[tuple[int, int, float]]:
        """Token healing: the distribution of the last token when the text may stop inside
        it, as ``(id, start, probability)`` sorted by probability. A candidate starts at
        byte offset ``start`` of ``normalize(text)`` and extends the remaining suffix; its
        weight is ``Z(start)·exp(α·v)``.

        >>> m = Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("bc", -1.0), ("bcd", -2.0)])
        >>> [(m.id_to_piece(i), s, round(p, 3)) for i, s, p in m.prefix_candidates("ab")]
        [('b', 1, 0.422), ('bc', 1, 0.422), ('bcd', 1, 0.155)]
        """
        return self._m.prefix_candidates(text, alpha)

    # ----------------------------------------------------------------- python protocol
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unigram) and self._m == other._m

    def __hash__(self) -> int:
        return hash(self._m)

    def __repr__(self) -> str:
        return repr(self._m)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (Unigram.from_bytes, (self._m.to_bytes(),))
