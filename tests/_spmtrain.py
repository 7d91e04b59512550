"""Small SentencePiece unigram models trained in memory by the `sentencepiece` wheel, for
parity tests of model options the shared models do not use (byte fallback, user-defined and
control symbols, whitespace as suffix, no dummy prefix, ...). Needs no `../shared`."""

from __future__ import annotations

import io

import pytest

WORDS = ["alpha", "beta", "gamma", "delta", "épée", "naïve", "中文", "测试", "ＡＢ", "x①", "ﬁx"]


def trained(**options) -> bytes:
    """A model trained on a generated corpus of `WORDS`; `options` go to the trainer."""
    spm = pytest.importorskip("sentencepiece")
    lines = [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 8)) for i in range(400)]
    kw = {"vocab_size": 330, "hard_vocab_limit": False, "minloglevel": 2, "num_threads": 1}
    kw.update(options)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, model_type="unigram", **kw
    )
    return out.getvalue()
