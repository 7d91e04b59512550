"""`Unigram.encode_with_spans`: token ids with the part of the input each came from.

Against SentencePiece's `SentencePieceText` (`encode(..., return_type="proto")`, whose pieces
carry `begin`/`end` byte offsets into the input) on every line of the shared corpora and on
models trained here with byte fallback, user-defined pieces and whitespace as suffix; without
the peer, the spans of unnormalised models must tile the text, and the ids must be those of
`encode` for the same arguments."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _spmtrain import trained
from probcraft import Unigram

MODELS = ["spm_en_botchan_1k.model", "spm_zh_fortunes_8k.model"]
CORPORA = ["botchan.txt", "zh_fortunes.txt"]


def _char_spans(text: str, byte_spans: list[list[int]]) -> list[list[int]]:
    """Byte offsets into ``text.encode()`` as ``str`` indices."""
    b = text.encode()
    return [[len(b[:s].decode()), len(b[:e].decode())] for s, e in byte_spans]


def _check_against(ref, ours: Unigram, texts: list[str]) -> int:
    """Ids and spans of ``ours`` against SentencePiece's proto on each text; returns the
    number of tokens compared."""
    n = 0
    for t in texts:
        proto = ref.encode(t, return_type="proto")
        want_ids = [p.id for p in proto.pieces]
        want = [[p.begin, p.end] for p in proto.pieces]
        ids, spans = ours.encode_with_spans(t.encode())
        assert ids.tolist() == want_ids, t
        assert spans.tolist() == want, t
        ids_s, cspans = ours.encode_with_spans(t)
        assert ids_s.tolist() == want_ids
        assert cspans.tolist() == _char_spans(t, want), t
        n += len(want_ids)
    return n


@pytest.mark.parametrize("model", MODELS)
def test_spans_match_sentencepiece_on_every_line(shared_dir: pathlib.Path, model: str) -> None:
    spm = pytest.importorskip("sentencepiece")
    path = shared_dir / "models" / model
    ours = Unigram.from_sentencepiece(str(path))
    ref = spm.SentencePieceProcessor(model_file=str(path))
    texts = []
    for corpus in CORPORA:
        texts += (shared_dir / "corpora" / corpus).read_text(encoding="utf-8").split("\n")
    # Characters the normaliser rewrites, collapses or drops, and ones no piece covers.
    texts += ["  ﬁ ① Ｈｅｌｌｏ  ", "\t tab\u3000wide ", "☃☃ x ☃", "", "   ", "a\u200bb"]
    n = _check_against(ref, ours, texts)
    print(f"{model}: {len(texts)} texts, {n} tokens, spans identical")


@pytest.mark.parametrize(
    "options",
    [
        {"byte_fallback": True},
        {"byte_fallback": True, "user_defined_symbols": ["ＡＢ", "<sep>"],
         "treat_whitespace_as_suffix": True},
        {"user_defined_symbols": ["x①"], "remove_extra_whitespaces": False},
        {"add_dummy_prefix": False, "split_by_whitespace": False},
    ],
)
def test_spans_match_sentencepiece_on_trained_models(options: dict) -> None:
    spm = pytest.importorskip("sentencepiece")
    mb = trained(**options)
    ours = Unigram.from_sentencepiece(mb)
    ref = spm.SentencePieceProcessor(model_proto=mb)
    texts = [
        "alpha beta  gamma",
        "☃ snow ☃☃ 😀",  # byte pieces (or merged UNKs) for characters never seen
        "ＡＢ and ＡＢＣ  <sep> x① y①",
        "  épée\tnaïve  ",
        "中文测试 未知的字",
        "ﬁ ① ｆｕｌｌ",
        "",
    ]
    assert _check_against(ref, ours, texts) > 0


def test_ids_are_those_of_encode_for_every_method() -> None:
    m = Unigram.from_pieces(
        [("<unk>", 0.0), ("a", -1.0), ("b", -1.2), ("ab", -1.5), ("ba", -2.0), ("é", -1.0)],
        unk=0,
    )
    text = "abéba☃☃ab" * 20
    for method in ["perfect", "ffbs", "viterbi-sampling"]:
        for alpha in [0.0, 0.3, 1.0]:
            for seed in range(5):
                kw = dict(alpha=alpha, seed=seed, method=method)
                ids, spans = m.encode_with_spans(text, **kw)
                assert ids.tolist() == m.encode(text, **kw).tolist()
                assert spans.shape == (len(ids), 2) and spans.dtype == np.int64
    ids, spans = m.encode_with_spans(text)
    assert ids.tolist() == m.encode(text).tolist()
    # Consecutive unknown characters are one UNK id spanning both.
    unk = [tuple(s) for i, s in zip(ids.tolist(), spans.tolist()) if i == 0]
    assert all(text[a:b] == "☃☃" for a, b in unk) and len(unk) == 20


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abé中😀☃x ", max_size=40))
def test_spans_tile_unnormalised_text(text: str) -> None:
    m = Unigram.from_pieces(
        [("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("ab", -1.5), ("é中", -2.0), ("😀", -1.0)],
        unk=0,
    )
    ids, spans = m.encode_with_spans(text)
    assert len(ids) == len(spans)
    assert "".join(text[a:b] for a, b in spans.tolist()) == text
    assert all(spans[1:, 0] == spans[:-1, 1]) if len(spans) > 1 else True
    # The same text as bytes: byte spans covering the same pieces.
    bids, bspans = m.encode_with_spans(text.encode())
    assert bids.tolist() == ids.tolist()
    assert [text.encode()[a:b].decode() for a, b in bspans.tolist()] == [
        text[a:b] for a, b in spans.tolist()
    ]


def test_empty_and_bad_input() -> None:
    m = Unigram.from_pieces([("a", -1.0)])
    ids, spans = m.encode_with_spans("")
    assert ids.shape == (0,) and spans.shape == (0, 2)
    with pytest.raises(TypeError, match="text must be str or bytes"):
        m.encode_with_spans(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTF-8"):
        m.encode_with_spans(b"a\xff")
    with pytest.raises(ValueError, match="cannot be segmented|no piece|segment"):
        m.encode_with_spans("b")
    with pytest.raises(ValueError, match="seed"):
        m.encode_with_spans("a", alpha=0.1, seed=-1)
    # Byte-level models take any bytes; a bytearray is bytes-like.
    b = Unigram.from_pieces([(bytes([i]).decode("latin-1"), -1.0) for i in range(128)] + [("ab", -1.0)])
    ids, spans = b.encode_with_spans(bytearray(b"xab"))
    assert spans.tolist() == [[0, 1], [1, 3]]
