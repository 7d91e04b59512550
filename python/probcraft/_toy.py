"""A small self-contained corpus and unigram vocabulary for examples, tests and benchmarks.

Not a trained tokenizer: the vocabulary holds every character of the corpus plus its frequent
substrings of 2-6 characters (a leading space belongs to the word that follows it, as in
SentencePiece), scored by log relative frequency. That is enough for segmentations with many
alternatives, which is what sampling needs.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

_WORDS = (
    "the of and to in is was for that with as on by at from his her they which this be are "
    "an not or have had one all were when there been has more who will would their so what "
    "about out up into them can other time only new some could these two may first then do "
    "any like my now over such our man me even most made after also did many before must "
    "through back years where much your way well down should because each just those people "
    "token tokens tokenizer segmentation lattice sampling probability softmax entmax density "
    "fourier training dataset pipeline worker cluster throughput stochastic regularization"
).split()


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` pseudo-random sentences of 4-24 words (deterministic in ``seed``).

    >>> corpus(2, seed=1) == corpus(2, seed=1)
    True
    """
    state = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & (2**64 - 1)
    out = []
    for _ in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        k = 4 + (state >> 33) % 21
        words = []
        for _ in range(k):
            state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
            # Squaring skews toward the start of the list: a Zipf-like word distribution.
            u = ((state >> 11) / 2.0**53) ** 2
            words.append(_WORDS[int(u * len(_WORDS))])
        out.append(" ".join(words))
    return out


def vocabulary(texts: Sequence[str], size: int = 400) -> list[tuple[str, float]]:
    """``(piece, log_prob)`` pairs: all characters plus the ``size`` most frequent substrings."""
    chars: Counter[str] = Counter()
    subs: Counter[str] = Counter()
    for t in texts:
        chars.update(t)
        for w in t.split(" "):
            w = " " + w
            for a in range(len(w)):
                for b in range(a + 2, min(a + 6, len(w)) + 1):
                    subs[w[a:b]] += 1
    pieces = dict(chars)
    for s, c in subs.most_common(size):
        pieces[s] = c
    total = sum(pieces.values())
    return sorted(((p, math.log(c / total)) for p, c in pieces.items()), key=lambda pc: -pc[1])


def model(texts: Sequence[str] | None = None, size: int = 400):  # type: ignore[no-untyped-def]
    """A :class:`probcraft.Unigram` built from :func:`vocabulary` (of :func:`corpus` by
    default)."""
    from .lattice import Unigram

    return Unigram.from_pieces(vocabulary(texts if texts is not None else corpus(500), size))
