"""Unigram training: vocabulary size, SentencePiece compatibility, EM behaviour, byte-level
and user-defined pieces, determinism, and bad input."""

from __future__ import annotations

import pathlib
import random

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from probcraft import Unigram, _core
from probcraft.train import EMIteration, to_sentencepiece, train, train_bytes

WORDS = (
    "the quick brown fox jumps over lazy dog and then runs into forest where "
    "another fox sleeps under tall trees near river banks while birds sing"
).split()


def corpus(n: int = 400, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(3, 12)
        words = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 999)) + ",")
        out.append(" ".join(words))
    return out


def spm_processor(model: Unigram) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=to_sentencepiece(model))


def test_small_corpus_vocab_size_and_sentencepiece_parity() -> None:
    lines = corpus()
    m = train(lines, 120, progress=False)
    assert m.vocab_size == 120
    sp = spm_processor(m)
    assert sp.get_piece_size() == 120
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    for line in lines[:100] + ["unseen words: zebra QUIZ 42!"]:
        assert sp.encode(line) == m.encode(line).tolist(), line
    # Scores are proper log-probabilities after the final maximum-likelihood step.
    info = _core._load_vocab("sentencepiece", to_sentencepiece(m))
    import math

    total = sum(math.exp(s) for (_, s, kind) in info if kind == 1)
    assert abs(total - 1.0) < 1e-3


def test_frequent_words_become_pieces() -> None:
    m = train(corpus(), 120, progress=False)
    assert m.encode_as_pieces("the fox") == ["▁the", "▁fox"]


def test_likelihood_improves_over_em_iterations() -> None:
    data, hist = train_bytes(corpus(), 100, progress=False, final_iterations=4)
    assert all(isinstance(h, EMIteration) for h in hist)
    final = [h.objective for h in hist if h.phase == "final"]
    assert len(final) == 4
    # EM on a fixed vocabulary never decreases its objective (likelihood + prior, reported
    # from the second iteration on).
    for a, b in zip(final[1:], final[2:]):
        assert b <= a + 1e-12 * abs(a)
    # The first round's second EM iteration fits better than the seed model.
    em = [h for h in hist if h.phase == "em"]
    assert em[1].objective < em[0].objective
    assert em[0].pieces > em[-1].pieces


def test_determinism_for_any_thread_count() -> None:
    lines = corpus(600, seed=3)
    ref, _ = train_bytes(lines, 150, num_threads=1, progress=False)
    for t in (2, 3, None):
        got, _ = train_bytes(lines, 150, num_threads=t, progress=False)
        assert got == ref
    assert train_bytes(lines, 150, num_threads=1, progress=False)[0] == ref


def test_generator_and_files_give_the_same_model(tmp_path: pathlib.Path) -> None:
    lines = corpus(9000, seed=5)  # more than one chunk of the streaming binding
    ref, _ = train_bytes(lines, 200, progress=False)
    gen, _ = train_bytes((s for s in lines), 200, progress=False)
    assert gen == ref
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(lines[:4000]) + "\n", encoding="utf-8")
    b.write_text("\r\n".join(lines[4000:]), encoding="utf-8")
    assert train_bytes([a, b], 200, progress=False)[0] == ref
    assert train_bytes([str(a), str(b)], 200, progress=False)[0] == ref


def test_byte_level_never_emits_unk() -> None:
    lines = corpus(300) + ["naïve café 東京"] * 5
    m = train(lines, 400, byte_level=True, progress=False)
    assert m.byte_level
    assert m.vocab_size == 400
    for text in ["the fox", "完全に未知の文字 ☃ 🎉", "naïve \x00\x7f"]:
        ids = m.encode(text).tolist()
        assert ids and m.unk_id not in ids
        assert m.decode_bytes(ids).decode("utf-8").replace("▁", " ").strip() == text.strip()


def test_byte_fallback_pieces() -> None:
    m = train(corpus(), 400, byte_fallback=True, progress=False)
    sp = spm_processor(m)
    assert sp.id_to_piece(3) == "<0x00>" and sp.is_byte(3)
    text = "fox ☃"
    assert sp.encode(text) == m.encode(text).tolist()
    assert 0 not in sp.encode(text)


def test_user_defined_pieces_are_kept_and_matched() -> None:
    lines = [s + " <sep> " + s for s in corpus(200)]
    m = train(lines, 120, user_defined=["<sep>", "[MASK]"], progress=False)
    sp = spm_processor(m)
    kinds = {p.decode(): k for (p, _, k) in _core._load_vocab("sentencepiece", to_sentencepiece(m))}
    assert kinds["<sep>"] == 4 and kinds["[MASK]"] == 4  # USER_DEFINED
    assert sp.piece_to_id("<sep>") == 3
    assert sp.piece_to_id("[MASK]") == 4
    for text in ["fox<sep>dog", "the [MASK] sat"]:
        ours = m.encode(text).tolist()
        assert ours == sp.encode(text)
    assert 3 in m.encode("fox<sep>dog").tolist()
    assert 4 in m.encode("the [MASK] sat").tolist()


def test_character_coverage_leaves_rare_characters_unknown() -> None:
    lines = corpus(300) + ["ζ"]
    m = train(lines, 100, character_coverage=0.999, progress=False)
    assert m.piece_to_id("ζ") is None
    assert m.encode("ζ").tolist() == [m.unk_id] or m.unk_id in m.encode("ζ").tolist()


def test_max_sentences_samples_with_the_seed() -> None:
    lines = corpus(2000, seed=9)
    a, _ = train_bytes(lines, 100, max_sentences=500, seed=1, progress=False)
    b, _ = train_bytes(lines, 100, max_sentences=500, seed=1, progress=False)
    c, _ = train_bytes(lines, 100, max_sentences=500, seed=2, progress=False)
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    "name,vocab,limit",
    [("botchan.txt", 1000, None), ("zh_fortunes.txt", 2000, 4000)],
)
def test_shared_corpora(shared_dir: pathlib.Path, name: str, vocab: int, limit: int | None) -> None:
    path = shared_dir / "corpora" / name
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip()]
    if limit:
        lines = lines[:limit]
    m = train(lines, vocab, progress=False)
    assert m.vocab_size == vocab
    sp = spm_processor(m)
    sample = lines[:: max(1, len(lines) // 300)]
    mism = [ln for ln in sample if sp.encode(ln) != m.encode(ln).tolist()]
    assert not mism, mism[:3]


def test_bad_input(tmp_path: pathlib.Path) -> None:
    lines = corpus(100)
    with pytest.raises(ValueError, match="too small"):
        train(lines, 3, progress=False)
    with pytest.raises(ValueError, match="too small.*required characters"):
        train(lines, 10, progress=False)
    with pytest.raises(ValueError, match="too large"):
        train(["ab"], 500, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train([], 50, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train(["", "   "], 50, progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        train(lines, -5, progress=False)
    with pytest.raises(TypeError, match="corpus item 1"):
        train(["ok", 3], 50, progress=False)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="iterable"):
        train(42, 50, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="character_coverage"):
        train(lines, 50, character_coverage=0.0, progress=False)
    with pytest.raises(ValueError, match="max_piece_length"):
        train(lines, 50, max_piece_length=0, progress=False)
    with pytest.raises(ValueError, match="num_threads"):
        train(lines, 50, num_threads=0, progress=False)
    with pytest.raises(ValueError, match="repeated"):
        train(lines, 50, user_defined=["x", "x"], progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(ValueError, match=r"bad\.txt: line 3 is not valid UTF-8"):
        train([bad], 50, progress=False)
    with pytest.raises(OSError, match="missing"):
        train(tmp_path / "missing.txt", 50, progress=False)


@settings(max_examples=25, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab cdé中文.", min_size=1, max_size=20), min_size=1, max_size=30),
    extra=st.integers(0, 30),
)
def test_any_corpus_trains_exactly_or_refuses_clearly(lines: list[str], extra: int) -> None:
    n_chars = len(set("".join(lines).replace(" ", "")) | {"▁"})
    vocab = 3 + n_chars + extra
    try:
        m = train(lines, vocab, character_coverage=1.0, progress=False, num_threads=1)
    except ValueError as e:
        assert "vocab_size" in str(e) or "empty" in str(e)
        return
    assert m.vocab_size == vocab
    sp = spm_processor(m)
    for line in lines:
        assert sp.encode(line) == m.encode(line).tolist()


_INTERRUPT_SCRIPT = r"""
import os, random, signal, sys, threading, time
from probcraft.train import train_bytes

# Python ignores SIGINT when started with it ignored (a background job): make it raise.
signal.signal(signal.SIGINT, signal.default_int_handler)
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 8))) for _ in range(300)]
lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(500)]
sent = []

def fire():
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)

threading.Timer(0.5, fire).start()
try:
    # A million EM iterations in the first round: hours, unless the signal stops it.
    train_bytes(lines, 100, num_sub_iterations=10**6, progress=False, num_threads=1)
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - sent[0]:.3f}s")
    sys.exit(0)
print("training finished")
sys.exit(1)
"""


def test_ctrl_c_stops_training_promptly() -> None:
    # The Rust work runs with the GIL released; without the core's periodic signal checks,
    # Ctrl-C only took effect once training ended (here: never within the timeout).
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    latency = float(r.stdout.split("interrupted after ")[1].rstrip("s\n"))
    # One EM iteration of this corpus takes about a millisecond; leave room for a slow CI.
    assert latency < 5.0, latency


def test_nul_is_unknown_text_and_never_a_piece() -> None:
    # SentencePiece's loader refuses a piece containing NUL; its trainer never makes one.
    lines = ["a\x00b cd", "x\x00\x00 cd a"] * 20
    m = train(lines, 10, progress=False)
    pieces = [m.id_to_piece(i) for i in range(m.vocab_size)]
    assert not any("\x00" in p for p in pieces), pieces
    sp = spm_processor(m)
    for line in lines[:2]:
        assert sp.encode(line) == m.encode(line).tolist()
    # A model from elsewhere with such a piece is refused with a clear error, not exported.
    other = Unigram.from_pieces([("<unk>", 0.0), ("a", -1.0), ("a\x00", -2.0)], unk=0)
    with pytest.raises(ValueError, match=r"piece 2 .* NUL"):
        to_sentencepiece(other)


@pytest.mark.parametrize(
    ("symbol", "byte_fallback"),
    [("<unk>", False), ("<s>", False), ("</s>", True), ("<0x41>", True), ("a\x00", False)],
)
def test_user_defined_clashing_with_special_pieces_fails_fast(
    symbol: str, byte_fallback: bool
) -> None:
    # Was found only after the whole run ("duplicate piece"), or mis-reported as a size error.
    with pytest.raises(ValueError, match=r"user_defined\[1\]"):
        train(
            corpus(),
            400 if byte_fallback else 120,
            user_defined=["<sep>", symbol],
            byte_fallback=byte_fallback,
            progress=False,
        )
    # Byte pieces are only special with byte_fallback.
    m = train(corpus(), 120, user_defined=["<0x41>"], progress=False)
    assert m.encode_as_pieces("<0x41>")[-1] == "<0x41>"


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", 2**64), ("seed", -1), ("max_sentences", 2**64), ("vocab_size", 2**70)],
)
def test_out_of_range_integers_name_the_argument(name: str, value: int) -> None:
    # 2**64 and up used to reach PyO3 and raise a bare OverflowError.
    kwargs: dict[str, int] = {"vocab_size": 50, name: value}
    with pytest.raises(ValueError, match=name):
        train(corpus(50), progress=False, **kwargs)  # type: ignore[arg-type]
