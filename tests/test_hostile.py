"""Hostile inputs (issue 8): every row of the table in docs/limits.md is one test here.

Each test states the expected behaviour: a specific exception whose message says what was
wrong, or a defined result. Nothing may crash, hang, or return a silently wrong value.
"""

from __future__ import annotations

import json
import math
import pathlib
import struct

import numpy as np
import pytest

import probcraft
from probcraft import LimitError, ModelFormatError, Unigram

REGRESSIONS = pathlib.Path(__file__).resolve().parent / "fuzz_regressions"

TRI = [("a", -1.0), ("aa", -1.5), ("aaa", -2.0)]


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def spm_piece(piece: bytes, score: float, kind: int = 1) -> bytes:
    body = b"\x0a" + varint(len(piece)) + piece + b"\x15" + struct.pack("<f", score)
    body += b"\x18" + varint(kind)
    return b"\x0a" + varint(len(body)) + body


# SentencePiece models must have an UNKNOWN piece; this one comes first in every test model.
UNK = spm_piece(b"<unk>", 0.0, 2)


def hf_doc(vocab: list, unk_id: int | None = None) -> bytes:
    doc = {
        "normalizer": None,
        "pre_tokenizer": None,
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab},
    }
    return json.dumps(doc).encode()


# ---------------------------------------------------------------- model headers and sizes


def test_sentencepiece_huge_length_prefix() -> None:
    # Field 1 (pieces), length 2**62: must not allocate, must say where.
    data = b"\x0a" + varint(1 << 62) + b"xx"
    with pytest.raises(ModelFormatError, match="offset"):
        Unigram.from_sentencepiece(data)


def test_sentencepiece_negative_length_prefix() -> None:
    # protobuf writes int32 -1 as a ten-byte varint; as a length it is 2**64 - 1.
    data = b"\x0a" + varint(-1) + b"xx"
    with pytest.raises(ModelFormatError):
        Unigram.from_sentencepiece(data)


def test_sentencepiece_truncated_and_garbage() -> None:
    good = UNK + spm_piece(b"a", -1.0) + spm_piece(b"b", -2.0)
    assert Unigram.from_sentencepiece(good).vocab_size == 3
    with pytest.raises(ModelFormatError, match="UNKNOWN"):
        Unigram.from_sentencepiece(spm_piece(b"a", -1.0))
    for cut in range(1, len(good)):
        try:
            Unigram.from_sentencepiece(good[:cut])
        except (ModelFormatError, ValueError):
            pass
    with pytest.raises(ModelFormatError):
        Unigram.from_sentencepiece(b"\xff" * 64)


def test_own_format_huge_and_negative_counts() -> None:
    data = bytearray(Unigram.from_pieces(TRI).to_bytes())
    assert Unigram.from_bytes(bytes(data)).vocab_size == 3
    # Find the piece count (u64 little-endian 3 right before the first piece's length 1).
    at = bytes(data).find(struct.pack("<QQ", 3, 1))
    assert at > 0
    for bad in (1 << 60, (1 << 64) - 1, 1 << 31):
        patched = bytes(data[:at]) + struct.pack("<Q", bad) + bytes(data[at + 8 :])
        with pytest.raises((ModelFormatError, LimitError)):
            Unigram.from_bytes(patched)


def test_own_format_truncations_never_crash() -> None:
    data = Unigram.from_pieces(TRI).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ModelFormatError):
            Unigram.from_bytes(data[:cut])


# ---------------------------------------------------------------- vocabulary contents


def test_duplicate_pieces() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Unigram.from_pieces([("a", -1.0), ("a", -2.0)])
    with pytest.raises((ValueError, ModelFormatError), match="duplicate"):
        Unigram.from_sentencepiece(UNK + spm_piece(b"a", -1.0) + spm_piece(b"a", -2.0))
    with pytest.raises((ValueError, ModelFormatError), match="duplicate"):
        Unigram.from_hf_json(hf_doc([["a", -1.0], ["a", -2.0]]))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Unigram.from_pieces([("a", -1.0), ("b", bad)])
    with pytest.raises((ValueError, ModelFormatError), match="finite"):
        Unigram.from_sentencepiece(UNK + spm_piece(b"a", -1.0) + spm_piece(b"b", bad))


def test_absurd_scores_refused() -> None:
    # Found by fuzzing: scores of 4.5e15 / -1.8e21 left no precision for log Z, so marginals
    # exceeded 1 and entropy came out inf. |score| > 1e7 is refused.
    # -1e39 overflows float32 (it was reported as "non-finite score -inf").
    for bad in (4.5e15, -1.8e21, 2e7, -1e39):
        with pytest.raises(LimitError, match="log-probabilities"):
            Unigram.from_pieces([("a", -1.0), ("b", bad)])
    assert Unigram.from_pieces([("a", -1.0), ("b", -9e6)]).vocab_size == 2
    with pytest.raises(LimitError, match="log-probabilities"):
        Unigram.from_hf_json(hf_doc([["a", -1.0], ["b", -1e39]]))


def test_non_finite_scores_in_json() -> None:
    # JSON has no NaN; Python writes it anyway, and 1e999 overflows a double.
    for raw in (b'[["a", NaN]]', b'[["a", Infinity]]', b'[["a", 1e999]]'):
        doc = hf_doc([]).replace(b"[]", raw)
        with pytest.raises((ValueError, ModelFormatError)):
            Unigram.from_hf_json(doc)


def test_non_finite_jieba_frequencies() -> None:
    for freq in (b"nan", b"inf", b"-1", b"1e999", b"0"):
        try:
            m = Unigram.from_jieba_dict(b"a 5 n\nb " + freq + b" n\n")
        except (ValueError, ModelFormatError):
            continue
        # Accepted (e.g. a zero count dropped): every score must still be finite.
        assert all(math.isfinite(m.score(i)) for i in range(m.vocab_size))


def test_empty_vocabulary() -> None:
    with pytest.raises(ValueError, match="empty"):
        Unigram.from_pieces([])
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_sentencepiece(b"")
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_hf_json(hf_doc([]))
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_jieba_dict(b"")
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_bytepiece(b"{}")


def test_vocabulary_without_single_characters() -> None:
    m = Unigram.from_pieces([("ab", -1.0), ("abc", -2.0)])
    assert m.encode_as_pieces("abab") == ["ab", "ab"]
    for call in (
        lambda: m.encode("abx"),
        lambda: m.nbest("abx", 3),
        lambda: m.sample("abx", 2, alpha=1.0, seed=0),
        lambda: m.sample("abx", 2, alpha=1.0, seed=0, replace=False),
        lambda: m.log_partition("abx"),
        lambda: m.entropy("abx"),
        lambda: m.marginals("abx"),
        lambda: m.encode_batch(["ab", "abx"]),
    ):
        with pytest.raises(ValueError, match="cannot be segmented"):
            call()


def test_deeply_nested_json() -> None:
    for doc in (b"[" * 100_000, b'{"a":' * 100_000, b'{"model":' + b"[" * 50_000):
        with pytest.raises(ModelFormatError):
            Unigram.from_hf_json(doc)
        with pytest.raises(ModelFormatError):
            Unigram.from_bytepiece(doc)


def test_invalid_utf8_everywhere() -> None:
    m = Unigram.from_pieces(TRI)
    with pytest.raises(ValueError, match="offset 2"):
        m.encode(b"aa\xffa")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        m.encode_batch([b"a", b"a\xc3"])
    surrogate = b"\xed\xa0\x80"  # UTF-8-encoded lone surrogate: invalid
    for call in (
        lambda: m.nbest(surrogate, 2),
        lambda: m.marginals(surrogate),
        lambda: m.log_partition(surrogate),
        lambda: m.sample(surrogate, 1, alpha=1.0, seed=0),
    ):
        with pytest.raises(ValueError, match="UTF-8"):
            call()
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_jieba_dict(b"a 1 n\n\xff\xfe 2 n\n")
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_sentencepiece(UNK + spm_piece(b"\xff", -1.0))
    with pytest.raises((ValueError, ModelFormatError)):
        Unigram.from_hf_json(b'{"model": {"type": "Unigram", "vocab": [["\xff", -1]]}}')
    # A lone surrogate in a Python str cannot reach Rust as UTF-8.
    with pytest.raises((ValueError, UnicodeEncodeError)):
        m.encode("a\ud800")


# ---------------------------------------------------------------- astronomically many paths


def test_ten_million_repetitions() -> None:
    """10**7 'a' with pieces a/aa/aaa: ~10**2645000 segmentations. Log-space must stay
    finite and exact, and Viterbi / k-best / sampling must run in one linear pass."""
    n = 10_000_000
    text = "a" * n
    m = Unigram.from_pieces(TRI)
    ids = m.encode(text)
    lens = np.array([len(m.id_to_piece(i)) for i in range(3)])
    assert int(lens[ids].sum()) == n
    # Viterbi: 'aaa' (-2 per 3 chars) beats everything else; one 'a' is left over.
    assert np.count_nonzero(ids == 2) == n // 3 and np.count_nonzero(ids == 0) == 1
    # k-best at a fifth of the length keeps the file's runtime down; it is one linear pass.
    short = text[: 2_000_000]
    best = m.nbest(short, 2)
    assert len(best) == 2 and best[0][1] >= best[1][1]
    assert best[0][1] == pytest.approx(-2.0 * (len(short) // 3) - 1.0)
    (draw, lp), = m.sample(text, 1, alpha=0.5, seed=1)
    assert int(lens[draw].sum()) == n and math.isfinite(lp) and lp < 0
    # At alpha=0, log Z = log(#segmentations) = n·log(tribonacci constant) + O(1).
    # T(n) = c·ρ^n (1 + o(1)) with ρ the tribonacci constant; c from exact small counts.
    lz = m.log_partition(text, alpha=0.0)
    rho = max(r.real for r in np.roots([1, -1, -1, -1]) if abs(r.imag) < 1e-12)
    t = [1, 1, 2]
    for _ in range(400):
        t.append(t[-1] + t[-2] + t[-3])
    log_c = math.log(t[400]) - 400 * math.log(rho)
    # Rounding over 10**7 log-add steps: ~1e-10 relative (docs/limits.md).
    assert lz == pytest.approx(n * math.log(rho) + log_c, rel=1e-9)
    assert m.log_partition("a" * 400, alpha=0.0) == pytest.approx(math.log(t[400]), rel=1e-12)


def test_million_repetitions_marginals_and_entropy() -> None:
    n = 1_000_000
    m = Unigram.from_pieces(TRI)
    h = m.entropy("a" * n, alpha=0.0)
    # Uniform over all segmentations: entropy equals log Z.
    assert h == pytest.approx(m.log_partition("a" * n, alpha=0.0), rel=1e-9)
    r = m.marginals("a" * n, alpha=1.0)
    assert np.isfinite(r["boundary"]).all() and np.isfinite(r["edge_prob"]).all()
    # log Z is ~10**6 here: f64 rounding over 10**6 log-space steps costs ~1e-6 relative in
    # the marginals (documented in docs/limits.md); they stay probabilities.
    assert r["boundary"][0] == pytest.approx(1.0, abs=1e-5)
    assert r["boundary"][-1] == pytest.approx(1.0, abs=1e-5)
    assert r["boundary"].min() >= 0 and r["boundary"].max() <= 1 + 1e-5
    drawn = m.sample("a" * 20_000, 4, alpha=1.0, seed=3, replace=False)
    assert len(drawn) == 4 and len({d[0].tobytes() for d in drawn}) == 4


# ---------------------------------------------------------------- limits refused clearly


def test_limits_refused_with_limit_error() -> None:
    m = Unigram.from_pieces(TRI)
    with pytest.raises(LimitError, match="k="):
        m.nbest("aaa", 1 << 21)
    # LimitError subclasses ValueError; sample's bound on n is reported as a ValueError.
    with pytest.raises(ValueError, match="1048576"):
        m.sample("aaa", 1 << 21, alpha=1.0, seed=0)
    with pytest.raises(LimitError):
        probcraft.FourierDensity(np.ones(5000))
    with pytest.raises(ValueError):
        m.nbest("aaa", -1)
    with pytest.raises((ValueError, OverflowError)):
        m.sample("aaa", -1, alpha=1.0, seed=0)


def test_kbest_memory_bound_refused() -> None:
    """k-best keeps k partial paths per position: text length × k beyond the documented
    bound is refused up front instead of exhausting memory."""
    m = Unigram.from_pieces(TRI)
    with pytest.raises(LimitError, match="partial paths"):
        m.nbest("a" * 2_000_000, 1 << 20)


def test_hostile_alpha_and_seed() -> None:
    m = Unigram.from_pieces(TRI)
    for alpha in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="alpha"):
            m.encode("aaa", alpha=alpha, seed=0)
        with pytest.raises(ValueError, match="alpha"):
            m.log_partition("aaa", alpha)
    with pytest.raises(ValueError, match="seed"):
        m.encode("aaa", alpha=1.0, seed=-1)
    # The largest alpha: the distribution collapses onto the Viterbi path, no overflow.
    assert m.log_partition("aaaaaa", 1e6) == pytest.approx(-4.0 * 1e6)
    assert m.encode("aaaaaa", alpha=1e6, seed=0).tolist() == [2, 2]
    # Beyond it log-probabilities lose their precision (a sample at 1.4e18 reported
    # log p = +16384; near 1e307 alpha·score overflows): refused.
    for alpha in (1e6 * (1 + 1e-15), 1e300):
        with pytest.raises(ValueError, match="at most"):
            m.log_partition("aaaaaa", alpha)


def test_decode_hostile_ids() -> None:
    m = Unigram.from_pieces(TRI)
    for ids in ([3], [-1], [2**40], np.array([1, 99], dtype=np.int64)):
        with pytest.raises(ValueError):
            m.decode(ids)
    with pytest.raises(TypeError):
        m.decode("abc")
    assert m.decode([]) == ""


# ---------------------------------------------------------------- arrays


def softmax_cases() -> list:
    return [
        probcraft.softmax,
        probcraft.log_softmax,
        probcraft.sparsemax,
        probcraft.entmax15,
        lambda x, **kw: probcraft.entmax(x, alpha=1.3, **kw),
    ]


@pytest.mark.parametrize("f", softmax_cases())
def test_arrays_with_nan_and_inf(f) -> None:
    y = f(np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]]))
    assert np.isnan(y[0]).all(), "a NaN row must stay NaN, not be silently renormalised"
    assert np.isfinite(y[1]).all()
    y = f(np.array([np.inf, 1.0, np.inf]))
    assert not np.isnan(y).any() or f is not probcraft.softmax


def test_softmax_documented_infinities() -> None:
    assert probcraft.softmax(np.array([np.inf, 1.0, np.inf])).tolist() == [0.5, 0.0, 0.5]
    assert np.isnan(probcraft.softmax(np.array([-np.inf, -np.inf]))).all()
    assert probcraft.softmax(np.array([-np.inf, 0.0])).tolist() == [0.0, 1.0]
    assert probcraft.logsumexp(np.zeros((2, 0))).tolist() == [-np.inf, -np.inf]
    # 1e30 magnitudes: no overflow to NaN.
    y = probcraft.softmax(np.array([1e30, -1e30, 1e30], dtype=np.float32))
    assert y.tolist() == [0.5, 0.0, 0.5]


@pytest.mark.parametrize("f", softmax_cases())
def test_zero_size_and_0d_arrays(f) -> None:
    assert f(np.zeros((0, 5))).shape == (0, 5)
    assert f(np.zeros((3, 0))).shape == (3, 0)
    assert f(np.zeros((2, 0, 4)), axis=1).shape == (2, 0, 4)
    y = f(np.array(3.0))
    assert y.shape == () and np.isfinite(y)


@pytest.mark.parametrize("f", softmax_cases())
def test_non_contiguous_and_byte_swapped(f) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((7, 33))
    ref = f(np.ascontiguousarray(base))
    np.testing.assert_allclose(f(base.T.copy().T), ref, rtol=1e-12, atol=1e-15)
    wide = np.zeros((7, 66))
    wide[:, ::2] = base
    np.testing.assert_allclose(f(wide[:, ::2]), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(f(base[::-1])[::-1], ref, rtol=1e-12, atol=1e-15)
    swapped = base.astype(">f8")
    np.testing.assert_allclose(f(swapped), ref, rtol=1e-12, atol=1e-15)
    # Misaligned storage (not even 8-byte aligned).
    buf = np.zeros(base.size * 8 + 1, np.uint8)
    mis = np.frombuffer(buf.data, dtype=np.float64, count=base.size, offset=1).reshape(7, 33)
    assert not mis.flags.aligned
    mis.setflags(write=True) if mis.flags.writeable else None
    np.copyto(np.frombuffer(buf.data, dtype=np.uint8, offset=1), base.view(np.uint8).ravel())
    np.testing.assert_allclose(f(mis), ref, rtol=1e-12, atol=1e-15)
    # Along axis 0 of the transposed array: strided rows.
    np.testing.assert_allclose(f(base.T, axis=0), ref.T, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "x", [np.array([1 + 1j]), np.array(["a"]), np.array([1], dtype=object), np.array([b"x"])]
)
def test_wrong_dtypes(x) -> None:
    for f in softmax_cases():
        with pytest.raises(TypeError, match="dtype"):
            f(x)
    with pytest.raises(TypeError):
        probcraft.FourierDensity(np.array([1.0, 0.5])).pdf(x)


def test_integer_and_half_dtypes_are_promoted() -> None:
    assert probcraft.softmax(np.arange(4)).dtype == np.float64
    assert probcraft.softmax(np.arange(4, dtype=np.int8)).dtype == np.float64
    assert probcraft.softmax(np.arange(4, dtype=np.float32)).dtype == np.float32


def test_densities_with_zero_or_tiny_coefficients() -> None:
    with pytest.raises(ValueError, match="zero"):
        probcraft.FourierDensity(np.zeros(5))
    with pytest.raises(ValueError, match="zero"):
        probcraft.FourierDensity(np.zeros((2, 3)).astype(complex) + np.array([[1], [0]]))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="finite"):
            probcraft.FourierDensity(np.array([1.0, bad]))
    # Only the direction of the coefficients matters: tiny (subnormal) and huge vectors give
    # the same density as the unit one (found by hand: 1e-320 used to give NaN everywhere).
    x = np.linspace(-0.99, 0.99, 9)
    ref = probcraft.FourierDensity(np.array([1.0, 0.5j])).pdf(x)
    for s in (2.0**-1070, 2.0**-1000, 2.0**1000, 2.0**1022):
        d = probcraft.FourierDensity(np.array([1.0, 0.5j]) * s)
        np.testing.assert_allclose(d.pdf(x), ref, rtol=1e-12)


def test_degree_zero_density_propagates_nan() -> None:
    # Found by hypothesis: a constant density returned 0.5 at NaN points.
    for domain in ("interval", "real"):
        d = probcraft.FourierDensity(np.array([1.0]), domain=domain)
        for f in (d.pdf, d.logpdf, d.cdf):
            y = f(np.array([np.nan, 0.25]))
            assert np.isnan(y[0]) and np.isfinite(y[1])


def test_density_hostile_points_and_sizes() -> None:
    d = probcraft.FourierDensity(np.array([1.0, 0.5]))
    y = d.pdf(np.array([np.nan, np.inf, -np.inf, 0.3, 2.0]))
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 0 and y[4] == 0 and y[3] > 0
    assert d.pdf(np.zeros(0)).shape == (0,)
    assert np.ndim(d.pdf(np.array(0.2))) == 0
    with pytest.raises(ValueError):
        d.rvs(-1)
    assert d.rvs(0, seed=0).shape == (0,)
    with pytest.raises(ValueError, match="quantiles"):
        d.ppf(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="finite"):
        probcraft.FourierDensity.fit(np.array([np.nan, 1.0]), 4)
    with pytest.raises(ValueError):
        probcraft.FourierDensity.fit(np.array([]), 4)


# ---------------------------------------------------------------- fuzz regressions via Python

LOADERS = {
    "sentencepiece": Unigram.from_sentencepiece,
    "hf_json": Unigram.from_hf_json,
    "bytepiece_json": Unigram.from_bytepiece,
    "jieba_dict": Unigram.from_jieba_dict,
    "vocab_bytes": Unigram.from_bytes,
}


@pytest.mark.parametrize("target", sorted(LOADERS))
def test_fuzz_regressions_through_python(target: str) -> None:
    """The saved fuzz inputs through the public constructors: a model or a documented
    exception, and a loaded model encodes a short text or refuses it with ValueError."""
    files = sorted((REGRESSIONS / target).iterdir())
    assert files
    for path in files:
        try:
            m = LOADERS[target](path.read_bytes())
        except (ValueError, ModelFormatError, LimitError):
            continue
        try:
            m.encode("hello wörld 日本語 ")
        except ValueError:
            pass


def test_text_fuzz_regressions_through_python() -> None:
    m = Unigram.from_pieces(TRI + [("b", -2.0), ("ab", -1.5), ("日本", -3.0)])
    files = sorted((REGRESSIONS / "text").iterdir())
    assert files
    for path in files:
        raw = path.read_bytes()[1:]
        try:
            ids = m.encode(raw)
        except ValueError:
            continue
        m.nbest(raw, 3)
        assert math.isfinite(m.log_partition(raw, 0.5))
        assert m.entropy(raw, 1.0) >= 0
        m.sample(raw, 2, alpha=1.0, seed=0)
        assert m.decode_bytes(ids) == raw


# ---------------------------------------------------------------- hypothesis on the Python API
# The Python-side fuzzer: arbitrary text and arrays through the public API. The example count
# comes from PROBCRAFT_FUZZ_EXAMPLES (default small for CI; the note records a long run).

import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

EXAMPLES = int(os.environ.get("PROBCRAFT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck)
)
FUZZ_MODEL = Unigram.from_pieces(
    TRI + [("b", -2.0), ("ab", -1.5), ("日本", -3.0), ("é", -4.0), ("\x00", -5.0)]
)
text_st = st.one_of(
    st.text(alphabet=st.sampled_from("aabé日本\x00xz "), max_size=60),
    st.text(max_size=30),
    st.binary(max_size=40),
)


@FUZZ
@given(text_st, st.integers(0, 6), st.floats(0, 4), st.integers(0, 2**64 - 1))
def test_fuzz_text_api(text, k, alpha, seed) -> None:
    m = FUZZ_MODEL
    try:
        ids = m.encode(text)
    except ValueError as e:
        # Only invalid UTF-8 or characters outside the vocabulary may be refused.
        assert "UTF-8" in str(e) or "cannot be segmented" in str(e)
        for call in (lambda: m.nbest(text, k + 1), lambda: m.log_partition(text, alpha)):
            with pytest.raises(ValueError):
                call()
        return
    raw = text.encode() if isinstance(text, str) else text
    assert m.decode_bytes(ids) == raw
    best = m.nbest(text, k)
    assert len(best) <= k
    if best:
        assert best[0][0].tolist() == ids.tolist() or best[0][1] == pytest.approx(
            sum(m.score(int(i)) for i in ids), abs=1e-4
        )
        assert all(a[1] >= b[1] for a, b in zip(best, best[1:]))
    lz = m.log_partition(text, alpha)
    assert math.isfinite(lz)
    h = m.entropy(text, alpha)
    assert math.isfinite(h) and h >= 0
    for draw, lp in m.sample(text, 2, alpha=alpha, seed=seed):
        assert m.decode_bytes(draw) == raw and lp <= 1e-9
        assert m.log_prob(text, draw, alpha) == pytest.approx(lp, abs=1e-9)
    for method in ("ffbs", "viterbi-sampling"):
        assert m.decode_bytes(m.encode(text, alpha=alpha, seed=seed, method=method)) == raw
    drawn = m.sample(text, 3, alpha=alpha, seed=seed, replace=False)
    assert len({d[0].tobytes() for d in drawn}) == len(drawn)
    r = m.marginals(text, alpha)
    assert np.all((r["edge_prob"] >= -1e-12) & (r["edge_prob"] <= 1 + 1e-12))


float_st = st.floats(allow_nan=True, allow_infinity=True, width=64)


@FUZZ
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int32, np.int8]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9),
    ),
    st.integers(-3, 2),
)
def test_fuzz_softmax_family(x, axis) -> None:
    if x.ndim == 0:
        axis = -1  # a 0-d array is one entry; its axis argument is not checked
    if x.ndim and not -x.ndim <= axis < x.ndim:
        for f in (probcraft.softmax, probcraft.sparsemax, probcraft.entmax15):
            with pytest.raises((ValueError, IndexError), match="axis"):
                f(x, axis=axis)
        return
    for f in (probcraft.softmax, probcraft.sparsemax, probcraft.entmax15):
        y = f(x, axis=axis)
        assert y.shape == x.shape
        if x.ndim == 0 or x.size == 0:
            continue
        xa = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1).reshape(-1, x.shape[axis])
        ya = np.moveaxis(np.asarray(y, dtype=np.float64), axis, -1).reshape(xa.shape)
        for xr, yr in zip(xa, ya):
            if np.isnan(xr).any() or (xr == -np.inf).all():
                assert np.isnan(yr).all()
                continue
            assert np.all(yr >= 0) and abs(yr.sum() - 1) < 1e-5, (f.__name__, xr, yr)


@FUZZ
@given(
    hnp.arrays(np.complex128, st.integers(1, 12), elements=st.complex_numbers(max_magnitude=1e300)),
    hnp.arrays(np.float64, st.integers(0, 50), elements=float_st),
)
def test_fuzz_fourier(coeffs, x) -> None:
    try:
        d = probcraft.FourierDensity(coeffs)
    except ValueError as e:
        assert "zero" in str(e) or "finite" in str(e)
        return
    p = d.pdf(x)
    assert p.shape == x.shape
    ok = ~np.isnan(x)
    assert np.all(np.isfinite(p[ok])) and np.all(p[ok] >= 0) and np.isnan(p[~ok]).all()
    c = d.cdf(x)
    assert np.all((c[ok] >= -1e-9) & (c[ok] <= 1 + 1e-9))
    q = d.ppf(np.clip(np.nan_to_num(x, nan=0.5), 0, 1))
    assert np.all(np.isfinite(q) & (q >= -1) & (q <= 1))
