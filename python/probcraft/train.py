"""Training unigram tokenizers (``Unigram.train``).

The algorithm is SentencePiece's unigram trainer, reimplemented in Rust: seed vocabulary from
the suffix array of the corpus words (frequency × length), EM with a forward–backward E-step
over every distinct word (parallel, identical results for any thread count), SentencePiece's
Bayesian M-step while shrinking, pruning by the exact loss of Viterbi corpus likelihood when a
piece is replaced by its own best segmentation, and a final maximum-likelihood re-estimation.

Text handling: no character normalisation (no NFKC charsmap: the trained model records the
``identity`` rule, so the ``sentencepiece`` library and probcraft encode its text the same way),
plus SentencePiece's whitespace pipeline (``remove_extra_whitespaces``, ``add_dummy_prefix``,
spaces escaped to ``▁``). Pieces never cross a ``▁`` except at their start, never mix Unicode
scripts, and never contain characters left out by ``character_coverage``.

>>> from probcraft.train import train
>>> lines = ["the cat sat on the mat", "the dog sat on the log"] * 50
>>> model = train(lines, 30, progress=False)
>>> model.vocab_size
30
>>> model.encode_as_pieces("the cat")[0]
'▁the'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NamedTuple, Union

from . import _core
from .lattice import Unigram

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["EMIteration", "train", "train_bytes"]


class EMIteration(NamedTuple):
    """One EM iteration of a training run."""

    phase: str
    """``"em"`` (shrinking phase, Bayesian M-step) or ``"final"`` (maximum likelihood)."""
    round: int
    sub_iteration: int
    pieces: int
    objective: float
    """Negative corpus log-likelihood per word occurrence (nats) under the model of the
    E-step."""
    tokens: float
    """Expected number of tokens in the corpus."""
    seconds: float


_U64 = 2**64


def _as_files(corpus: object, files: bool | None) -> tuple[object, bool]:
    if isinstance(corpus, (str, os.PathLike)):
        # A lone string is a path: a single sentence would be a list of one.
        return [os.fspath(corpus)], True
    if files is not None:
        if files:
            return [os.fspath(p) for p in corpus], True  # type: ignore[attr-defined]
        return corpus, False
    if isinstance(corpus, (list, tuple)) and corpus:
        if all(isinstance(p, os.PathLike) for p in corpus):
            return [os.fspath(p) for p in corpus], True
        if all(
            isinstance(p, str) and "\n" not in p and os.path.isfile(p) for p in corpus
        ):
            return list(corpus), True
    return corpus, False


def train_bytes(
    corpus: Iterable[str] | Iterable[PathLike] | PathLike,
    vocab_size: int,
    *,
    byte_level: bool = False,
    byte_fallback: bool = False,
    max_piece_length: int = 16,
    character_coverage: float = 0.9995,
    user_defined: Iterable[str] = (),
    num_threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
    files: bool | None = None,
    max_sentences: int | None = None,
    seed_size: int = 1_000_000,
    shrinking_factor: float = 0.75,
    num_sub_iterations: int = 2,
    final_iterations: int = 2,
) -> tuple[bytes, list[EMIteration]]:
    """As :func:`train`, but returns the model bytes (``Unigram.from_bytes`` format) and the
    EM history. The extra knobs are SentencePiece's: ``seed_size`` (seed vocabulary cap),
    ``shrinking_factor`` (fraction kept per pruning round), ``num_sub_iterations`` (EM
    iterations per round), plus ``final_iterations`` (maximum-likelihood EM iterations on the
    final vocabulary).

    >>> data, history = train_bytes(["ab ab ba"] * 10, 8, progress=False)
    >>> history[-1].phase
    'final'
    """
    for name, value in (
        ("vocab_size", vocab_size),
        ("max_piece_length", max_piece_length),
        ("seed_size", seed_size),
        ("num_sub_iterations", num_sub_iterations),
        ("final_iterations", final_iterations),
        ("seed", seed),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        # The binding takes 64-bit integers; past that PyO3 raises a bare OverflowError that
        # does not say which argument was wrong.
        if value >= _U64:
            raise ValueError(f"{name} must be less than 2**64, got a {value.bit_length()}-bit int")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    if max_sentences is not None and (not isinstance(max_sentences, int) or max_sentences < 1):
        raise ValueError(f"max_sentences must be a positive int or None, got {max_sentences!r}")
    for name, opt in (("num_threads", num_threads), ("max_sentences", max_sentences)):
        if opt is not None and opt >= _U64:
            raise ValueError(f"{name} must be less than 2**64, got a {opt.bit_length()}-bit int")
    if isinstance(user_defined, str):
        raise TypeError("user_defined must be an iterable of str, not a str")
    user = list(user_defined)
    if not all(isinstance(u, str) for u in user):
        raise TypeError("user_defined must contain only str")
    items, is_files = _as_files(corpus, files)
    data, history = _core._train_unigram(
        items,
        vocab_size,
        files=is_files,
        byte_level=bool(byte_level),
        byte_fallback=bool(byte_fallback),
        max_piece_length=max_piece_length,
        character_coverage=float(character_coverage),
        user_defined=user,
        num_threads=num_threads,
        seed=seed,
        max_sentences=max_sentences,
        seed_size=seed_size,
        shrinking_factor=float(shrinking_factor),
        num_sub_iterations=num_sub_iterations,
        final_iterations=final_iterations,
        progress=bool(progress) and sys.stderr.isatty(),
    )
    return data, [EMIteration(*h) for h in history]


def train(
    corpus: Iterable[str] | Iterable[PathLike] | PathLike,
    vocab_size: int,
    *,
    byte_level: bool = False,
    max_piece_length: int = 16,
    character_coverage: float = 0.9995,
    user_defined: Iterable[str] = (),
    num_threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
    byte_fallback: bool = False,
    files: bool | None = None,
    max_sentences: int | None = None,
) -> Unigram:
    """Trains a unigram model of ``vocab_size`` pieces (``<unk>``, ``<s>``, ``</s>`` and the
    ``user_defined`` symbols included).

    ``corpus`` is an iterable of sentences (streamed to Rust in chunks, so a generator is
    never materialised), or text files with one sentence a line: a path, a list of
    ``os.PathLike``, a list of ``str`` that all name existing files, or anything with
    ``files=True``. ``byte_level=True`` trains over bytes: all 256 bytes are pieces and no text
    is ever unknown. ``byte_fallback=True`` adds SentencePiece's 256 ``<0xXX>`` pieces instead.
    ``character_coverage`` is the share of corpus characters that must be pieces; rarer
    characters become ``<unk>``. ``user_defined`` symbols are kept whole (type
    USER_DEFINED) and never split. ``max_sentences`` trains on a uniform sample of that many
    sentences, drawn with ``seed``. Training is deterministic: the same model for any
    ``num_threads``. ``progress`` prints one line per EM iteration to stderr when it is a
    terminal.

    >>> m = train(["hello world", "hello there"] * 20, 25, progress=False)
    >>> m.encode_as_pieces("hello")
    ['▁hello']
    """
    data, _ = train_bytes(
        corpus,
        vocab_size,
        byte_level=byte_level,
        byte_fallback=byte_fallback,
        max_piece_length=max_piece_length,
        character_coverage=character_coverage,
        user_defined=user_defined,
        num_threads=num_threads,
        seed=seed,
        progress=progress,
        files=files,
        max_sentences=max_sentences,
    )
    return Unigram.from_bytes(data)


def to_sentencepiece(model: Unigram) -> bytes:
    """A SentencePiece ``.model`` (``ModelProto``) for a non-byte-level model.

    >>> import sentencepiece as spm
    >>> m = train(["hello world"] * 20, 20, progress=False)
    >>> sp = spm.SentencePieceProcessor(model_proto=to_sentencepiece(m))
    >>> sp.encode("hello world") == m.encode("hello world").tolist()
    True
    """
    return _core._vocab_to_sentencepiece(model.to_bytes())


__all__ += ["to_sentencepiece"]
