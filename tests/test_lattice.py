"""Lattice engine: exactness against brute-force enumeration, sampler distributions, batch
determinism, and bad input. Parity with SentencePiece / jieba lives in test_lattice_parity.py."""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import pickle
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probcraft
from probcraft import Unigram

# --------------------------------------------------------------------------- brute force


def brute_paths(pieces: dict[str, tuple[int, float]], text: str, unk: int | None, unk_score: float):
    """Every segmentation as a list of (start, end, id, score), by plain recursion."""
    singles = {p for p in pieces if len(p) == 1}
    out = []

    def rec(i: int, acc: list) -> None:
        if i == len(text):
            out.append(list(acc))
            return
        for j in range(i + 1, len(text) + 1):
            w = text[i:j]
            if w in pieces:
                pid, v = pieces[w]
                acc.append((i, j, pid, v))
                rec(j, acc)
                acc.pop()
        if unk is not None and text[i] not in singles:
            acc.append((i, i + 1, unk, unk_score))
            rec(i + 1, acc)
            acc.pop()

    rec(0, [])
    return out


def merged_ids(path, unk):
    ids = []
    for (_, _, pid, _) in path:
        if pid == unk and ids and ids[-1] == unk:
            continue
        ids.append(pid)
    return tuple(ids)


def lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def f32(x: float) -> float:
    return float(np.float32(x))


@st.composite
def small_models(draw):
    alphabet = "abc"
    words = draw(
        st.lists(st.text(alphabet, min_size=1, max_size=3), min_size=1, max_size=9, unique=True)
    )
    scores = [f32(draw(st.floats(-6.0, -0.1))) for _ in words]
    use_unk = draw(st.booleans())
    if not use_unk:
        # Without UNK every character needs a single-character piece.
        for c in alphabet:
            if c not in words:
                words.append(c)
                scores.append(f32(draw(st.floats(-6.0, -0.1))))
    text = draw(st.text(alphabet, min_size=0, max_size=7))
    return words, scores, use_unk, text


def build(words, scores, use_unk):
    pairs = list(zip(words, scores))
    unk = None
    if use_unk:
        pairs = [("<unk>", 0.0)] + pairs
        unk = 0
    m = Unigram.from_pieces(pairs, unk=unk)
    table = {w: (i + (1 if use_unk else 0), s) for i, (w, s) in enumerate(zip(words, scores))}
    normal = [s for s in scores]
    unk_score = f32(f32(min(normal)) - 10.0) if use_unk else 0.0
    return m, table, unk, unk_score


@settings(max_examples=150, deadline=None)
@given(small_models(), st.sampled_from([0.0, 0.3, 1.0, 2.5]))
def test_exact_quantities_match_brute_force(model, alpha):
    words, scores, use_unk, text = model
    m, table, unk, unk_score = build(words, scores, use_unk)
    paths = brute_paths(table, text, unk, unk_score)
    assert paths, "every text is segmentable here"
    tot = [sum(e[3] for e in p) for p in paths]
    logw = [alpha * s for s in tot]
    log_z = lse(logw)
    probs = [math.exp(x - log_z) for x in logw]
    assert m.log_partition(text, alpha) == pytest.approx(log_z, abs=1e-9)
    ent = -sum(p * math.log(p) for p in probs if p > 0)
    assert m.entropy(text, alpha) == pytest.approx(ent, abs=1e-9)

    # log p of every id sequence (paths that merge to the same ids are summed).
    by_ids: dict[tuple, list[float]] = {}
    for p, lw in zip(paths, logw):
        by_ids.setdefault(merged_ids(p, unk), []).append(lw)
    for ids, lws in by_ids.items():
        assert m.log_prob(text, list(ids), alpha) == pytest.approx(lse(lws) - log_z, abs=1e-9)

    # Marginals: boundaries, piece counts, expected tokens.
    mg = m.marginals(text, alpha)
    n = len(text)
    bnd = np.zeros(n + 1)
    counts: Counter = Counter()
    exp_tokens = 0.0
    for p, pr in zip(paths, probs):
        bnd[0] += pr
        for (s, e, pid, _) in p:
            bnd[e] += pr
            counts[pid] += pr
        exp_tokens += pr * len(p)
    np.testing.assert_allclose(mg["boundary"], bnd, atol=1e-9)
    got = dict(zip(mg["piece_ids"].tolist(), mg["piece_counts"].tolist()))
    for pid in set(got) | set(counts):
        assert got.get(pid, 0.0) == pytest.approx(counts.get(pid, 0.0), abs=1e-9)
    assert mg["expected_tokens"] == pytest.approx(exp_tokens, abs=1e-9)

    # k-best: scores equal the brute-force top k, every result is a real segmentation.
    k = 5
    best = m.nbest(text, k)
    want = sorted(tot, reverse=True)[:k]
    assert [s for _, s in best] == pytest.approx(want, abs=1e-9)
    valid = {merged_ids(p, unk): s for p, s in zip(paths, tot)}
    for ids, s in best:
        assert tuple(ids.tolist()) in valid

    # Viterbi reaches the best score (f32 sums, as SentencePiece).
    v = tuple(m.encode(text).tolist())
    assert v in valid and valid[v] == pytest.approx(max(tot), abs=1e-4)

    # Token healing against the brute-force prefix partition functions.
    if n:
        cands = m.prefix_candidates(text, alpha)
        assert sum(c[2] for c in cands) == pytest.approx(1.0, abs=1e-9)
        want_c = {}
        for s in range(n):
            pre = brute_paths(table, text[:s], unk, unk_score) if s else [[]]
            if not pre:
                continue
            lz_s = lse([alpha * sum(e[3] for e in p) for p in pre])
            rest = text[s:]
            for w, (pid, v_) in table.items():
                if w.startswith(rest):
                    want_c[(pid, s)] = lz_s + alpha * v_
            if unk is not None and len(rest) == 1 and rest not in {w for w in table if len(w) == 1}:
                want_c[(unk, s)] = lz_s + alpha * unk_score
        tot_c = lse(list(want_c.values()))
        got_c = {(i, s): p for i, s, p in cands}
        assert set(got_c) == set(want_c)
        for key, lw in want_c.items():
            assert got_c[key] == pytest.approx(math.exp(lw - tot_c), abs=1e-9)


# --------------------------------------------------------------------------- samplers

# Three segmentations with exactly equal scores: "abc", "a|bc", "ab|c".
EQUAL3 = [("a", -1.0), ("ab", -1.5), ("abc", -3.0), ("bc", -2.0), ("c", -1.5)]


def chi2_pvalue(observed: Counter, expected: dict, n: int) -> float:
    from scipy.stats import chisquare

    keys = list(expected)
    obs = [observed.get(k, 0) for k in keys]
    assert sum(obs) == n, "a draw fell outside the support"
    exp = [expected[k] * n for k in keys]
    return float(chisquare(obs, exp).pvalue)


def exact_dist(m, text, alpha, words_scores, unk=None, unk_score=0.0):
    table = {w: (i, s) for i, (w, s) in enumerate(words_scores)}
    paths = brute_paths(table, text, unk, unk_score)
    lw = [alpha * sum(e[3] for e in p) for p in paths]
    lz = lse(lw)
    return {merged_ids(p, unk): math.exp(x - lz) for p, x in zip(paths, lw)}


# Scores rounded to f32 up front: the model stores f32, and the brute force must use the same.
RICH = [
    (w, f32(s))
    for w, s in [("a", -1.2), ("b", -1.9), ("ab", -2.1), ("ba", -3.3), ("aba", -3.0), ("bab", -4.1), ("abab", -5.0)]
]


@pytest.mark.parametrize("method", ["perfect", "ffbs"])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0, 2.0])
def test_samplers_match_exact_distribution(method, alpha):
    m = Unigram.from_pieces(RICH)
    text = "ababa"
    exp = exact_dist(m, text, alpha, RICH)
    n = 6000
    draws = m.encode_batch([text] * n, alpha=alpha, seed=12345, method=method, num_threads=1)
    obs = Counter(tuple(d.tolist()) for d in draws)
    assert chi2_pvalue(obs, exp, n) > 1e-4
    # The log-probabilities the sampler reports are the exact ones.
    for ids, lp in m.sample(text, 20, alpha=alpha, seed=3, method=method):
        assert lp == pytest.approx(math.log(exp[tuple(ids.tolist())]), abs=1e-9)


def test_perfect_and_ffbs_agree_on_equal_candidates_and_historic_rule_is_biased():
    m = Unigram.from_pieces(EQUAL3)
    n = 6000
    exp = {(2,): 1 / 3, (0, 3): 1 / 3, (1, 4): 1 / 3}
    for method in ("perfect", "ffbs"):
        d = m.encode_batch(["abc"] * n, alpha=1.0, seed=9, method=method)
        obs = Counter(tuple(x.tolist()) for x in d)
        assert chi2_pvalue(obs, exp, n) > 1e-4, method
    d = m.encode_batch(["abc"] * n, alpha=1.0, seed=9, method="viterbi-sampling")
    obs = Counter(tuple(x.tolist()) for x in d)
    # The last candidate ("ab|c") wins half the time, the others a quarter each.
    assert obs[(1, 4)] / n == pytest.approx(0.5, abs=0.03)
    assert obs[(2,)] / n == pytest.approx(0.25, abs=0.03)
    assert chi2_pvalue(obs, exp, n) < 1e-10


def test_alpha_zero_is_uniform_not_deterministic():
    m = Unigram.from_pieces(RICH)
    draws = m.encode_batch(["abab"] * 2000, alpha=0.0, seed=1)
    assert len({tuple(d.tolist()) for d in draws}) == len(exact_dist(m, "abab", 0.0, RICH))
    assert m.log_partition("abab", 0.0) == pytest.approx(math.log(len(exact_dist(m, "abab", 0.0, RICH))))


def test_large_alpha_uses_log_domain_and_concentrates_on_viterbi():
    m = Unigram.from_pieces(RICH)
    v = m.encode("abababab").tolist()
    for a in (50.0, 500.0):
        d = m.encode_batch(["abababab"] * 50, alpha=a, seed=2)
        assert all(x.tolist() == v for x in d)
        assert math.isfinite(m.log_partition("abababab", a))


def test_sampling_without_replacement():
    m = Unigram.from_pieces(RICH)
    text = "ababa"
    exp = exact_dist(m, text, 1.0, RICH)
    res = m.sample(text, 4, alpha=1.0, seed=5, replace=False)
    assert len(res) == 4
    seen = [tuple(r[0].tolist()) for r in res]
    assert len(set(seen)) == 4
    for ids, lp, q in res:
        assert lp == pytest.approx(math.log(exp[tuple(ids.tolist())]), abs=1e-9)
        assert 0.0 < q <= 1.0
    # Asking for more than exist returns all of them, each with inclusion probability 1.
    allr = m.sample(text, 100, alpha=1.0, seed=5, replace=False)
    assert {tuple(r[0].tolist()) for r in allr} == set(exp)
    assert all(r[2] == 1.0 for r in allr)
    # The first sample of Gumbel-top-k is an exact draw from p: check its frequency.
    n = 3000
    firsts = Counter(
        tuple(m.sample(text, 2, alpha=1.0, seed=s, replace=False)[0][0].tolist()) for s in range(n)
    )
    assert chi2_pvalue(firsts, exp, n) > 1e-4
    # Inclusion probabilities are calibrated: E[1{w in S}/q(w)] ≈ 1 for a fixed w.
    target = max(exp, key=exp.get)
    est = 0.0
    for s in range(n):
        for ids, lp, q in m.sample(text, 2, alpha=1.0, seed=10_000 + s, replace=False):
            if tuple(ids.tolist()) == target:
                est += 1.0 / q
    assert est / n == pytest.approx(1.0, abs=0.08)


def test_nbest_long_line_stays_exact():
    m = Unigram.from_pieces(RICH)
    text = "ab" * 2000
    best = m.nbest(text, 10)
    assert len(best) == 10
    scores = [s for _, s in best]
    assert scores == sorted(scores, reverse=True)
    # The best is the Viterbi path; k-best of a repeated block is checkable: shifting one
    # local choice costs a fixed amount, so the 2nd..k-th are all valid and distinct.
    assert best[0][0].tolist() == m.encode(text).tolist()
    assert len({tuple(b[0].tolist()) for b in best}) == 10
    for ids, s in best:
        assert m.log_prob(text, ids, 1.0) == pytest.approx(s - m.log_partition(text, 1.0), abs=1e-6)


# --------------------------------------------------------------------------- determinism


TEXTS = ["abab", "ba", "", "abababab", "aab", "babababa"] * 5


def _enc(m, **kw):
    return [x.tolist() for x in m.encode_batch(TEXTS, **kw)]


def test_batch_determinism_threads_splits_pickle():
    m = Unigram.from_pieces(RICH)
    kw = dict(alpha=0.3, seed=77)
    one = _enc(m, num_threads=1, **kw)
    assert _enc(m, num_threads=2, **kw) == one
    # Any split with matching stream offsets reproduces the whole batch.
    a = [x.tolist() for x in m.encode_batch(TEXTS[:7], num_threads=2, **kw)]
    b = [x.tolist() for x in m.encode_batch(TEXTS[7:], stream_offset=7, num_threads=1, **kw)]
    assert a + b == one
    # Single calls are item 0 of a batch.
    assert m.encode(TEXTS[0], **kw).tolist() == one[0]
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == m and pickle.dumps(m2) == pickle.dumps(m)
    assert _enc(m2, num_threads=2, **kw) == one
    core2 = pickle.loads(pickle.dumps(m._m))
    assert core2 == m._m
    ids, off = m.encode_batch(TEXTS, flat=True, **kw)
    assert ids.dtype == np.int32 and off.dtype == np.int64
    assert [ids[off[i]:off[i + 1]].tolist() for i in range(len(TEXTS))] == one
    # seed=None: fresh entropy, so two calls (almost surely) differ somewhere.
    r1 = _enc(m, alpha=0.0)
    r2 = _enc(m, alpha=0.0)
    assert r1 != r2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_list_equals_flat_on_any_thread_count(threads):
    # Enough items for many chunks: the list form fills its slots chunk by chunk as the pool
    # finishes them, in any order.
    m = Unigram.from_pieces(RICH)
    texts = [("ab" * (i % 7)) + "a" * (i % 3) for i in range(1000)]
    for kw in (dict(), dict(alpha=0.5, seed=3), dict(alpha=0.5, seed=3, method="ffbs")):
        ids, off = m.encode_batch(texts, flat=True, num_threads=1, **kw)
        ids2, off2 = m.encode_batch(texts, flat=True, num_threads=threads, **kw)
        assert ids2.tolist() == ids.tolist() and off2.tolist() == off.tolist()
        # An iterable without a length, and bytes items, give the same.
        gen = m.encode_batch((t.encode() for t in texts), flat=True, num_threads=threads, **kw)
        assert gen[0].tolist() == ids.tolist() and gen[1].tolist() == off.tolist()
        got = m.encode_batch(texts, num_threads=threads, **kw)
        assert len(got) == len(texts)
        assert [x.tolist() for x in got] == [ids[off[i]:off[i + 1]].tolist() for i in range(len(texts))]
        assert all(x.dtype == np.int32 and x.ndim == 1 for x in got)
    # The items are disjoint views: writing into one changes no other.
    got = m.encode_batch(texts, num_threads=threads)
    before = [x.copy() for x in got]
    got[5][:] = -1
    assert all((g == b).all() for i, (g, b) in enumerate(zip(got, before)) if i != 5)
    assert m.encode_batch([], num_threads=threads) == []


def test_batch_list_error_names_the_first_bad_item():
    # Bad items in several chunks: the lowest index is reported, whatever chunk finishes first.
    m = Unigram.from_pieces(RICH)
    texts = ["ab"] * 1000
    texts[700] = b"\xff\xfe"
    texts[300] = b"\xc3"
    for threads in (1, 2, 3):
        for flat in (False, True):
            with pytest.raises(ValueError, match=r"texts\[300\]"):
                m.encode_batch(texts, num_threads=threads, flat=flat)
        with pytest.raises(TypeError, match=r"texts\[2\]"):
            m.encode_batch(["a", "b", 3], num_threads=threads)
        # An unreadable item is reported before an encoding error in an earlier chunk (as
        # when every item is read before any is encoded), in both forms.
        bad = list(texts)
        bad[900] = 3
        for flat in (False, True):
            with pytest.raises(TypeError, match=r"texts\[900\]"):
                m.encode_batch(bad, num_threads=threads, flat=flat)


class _Raising(list):
    """A sized sequence whose iteration fails at item 700."""

    def __iter__(self):
        for i, t in enumerate(list.__iter__(self)):
            if i == 700:
                raise RuntimeError("boom at 700")
            yield t


def test_batch_iterable_that_raises_midway():
    # The reading thread stops with chunks queued and some being encoded: the iterable's own
    # exception comes out, nothing hangs, and the next batch on the same pool is whole.
    m = Unigram.from_pieces(RICH)
    items = _Raising("ab" * (i % 5) for i in range(1000))
    for threads in (2, 3):
        for flat in (False, True):
            with pytest.raises(RuntimeError, match="boom at 700"):
                m.encode_batch(items, num_threads=threads, flat=flat)
            texts = ["ab" * (i % 5) for i in range(700)]
            got = m.encode_batch(texts, num_threads=threads)
            assert [x.tolist() for x in got] == [m.encode(t).tolist() for t in texts]


def _fresh(s: str) -> str:
    """A new ``str`` equal to ``s`` with no UTF-8 copy cached on it yet."""
    return s.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


WIDE = Unigram.from_pieces(
    [("<unk>", 0.0), ("a", -1.2), ("b", -1.9), ("ab", -2.1), ("é", -2.0), ("aé", -2.2), ("中文", -2.5), ("文b", -2.6), ("😀", -3.0)],
    unk=0,
)


def test_batch_reads_non_ascii_str_without_caching_utf8():
    # Non-ASCII str items (stored as latin-1, UCS-2 and UCS-4 by CPython) are transcoded to
    # UTF-8 by the encoding threads: the same ids as bytes input and as strings that already
    # hold a UTF-8 copy, in both forms, with and without sampling, and no UTF-8 copy is left
    # attached to the caller's strings (CPython's sys.getsizeof counts it).
    m = WIDE
    base = ["ab", "é" * 3 + "ab", "中文ab中" * 5, "😀a中é" * 4, "", "abab" * 20, "b中文" * 40, "x\x00é"]
    texts = [base[i % len(base)] + "a" * (i % 3) for i in range(600)]
    for kw in ({}, {"alpha": 0.3, "seed": 5}):
        want = m.encode_batch([t.encode() for t in texts], flat=True, num_threads=1, **kw)
        for threads in (1, 2, 3):
            for flat in (False, True):
                fresh = [_fresh(t) for t in texts]
                sizes = [sys.getsizeof(t) for t in fresh]
                got = m.encode_batch(fresh, flat=flat, num_threads=threads, **kw)
                if not flat:
                    got = (np.concatenate(got), np.cumsum([0] + [len(x) for x in got]))
                assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
                if probcraft.build_info()["str_transcoder"]:
                    # UCS-4 strings (beyond the BMP) still go through CPython's encoder.
                    assert [sys.getsizeof(t) for t in fresh] == [
                        n if max(t, default="a") < "\U00010000" else sys.getsizeof(t) for t, n in zip(fresh, sizes)
                    ]
                # Strings holding a UTF-8 copy already are read through it: same ids.
                for t in fresh:
                    m.normalize(t)  # reads t's UTF-8, which CPython caches on t
                assert all(sys.getsizeof(t) > n for t, n in zip(fresh, sizes) if not t.isascii())
                again = m.encode_batch(fresh, flat=True, num_threads=threads, **kw)
                assert again[0].tolist() == want[0].tolist()
        # str subclasses (stored apart from their object) are read as before.

        class Text(str):
            pass

        got = m.encode_batch([Text(t) for t in texts], flat=True, num_threads=2, **kw)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_batch_lone_surrogate_is_reported_first():
    # A str holding a lone surrogate cannot be UTF-8: the exception str.encode raises, for
    # the first such item, wherever it is and on any thread count, and before any encoding
    # error or later unreadable item (as when every item was made UTF-8 while it was read).
    m = WIDE
    texts = [_fresh("ab中文é" * (1 + i % 7)) for i in range(1000)]
    for at in (0, 5, 17, 499, 999):
        bad = list(texts)
        bad[at] = _fresh("中" * (at % 3) + "a\ud800b")
        bad[min(at + 100, 999)] = _fresh("\udfff")
        with pytest.raises(UnicodeEncodeError) as want:
            bad[at].encode()
        for threads in (1, 2, 3):
            for flat in (False, True):
                with pytest.raises(UnicodeEncodeError) as got:
                    m.encode_batch(bad, num_threads=threads, flat=flat)
                assert str(got.value) == str(want.value)
    bad = list(texts)
    bad[900] = _fresh("a\ud800")
    bad[10] = b"\xff"  # an encoding error in an earlier item
    bad[950] = 3  # a later unreadable item
    for threads in (1, 2, 3):
        for flat in (False, True):
            with pytest.raises(UnicodeEncodeError):
                m.encode_batch(bad, num_threads=threads, flat=flat)

    gen = list(texts)
    gen[5] = _fresh("\ud800")
    for threads in (1, 2, 3):
        for flat in (False, True):
            with pytest.raises(UnicodeEncodeError):
                m.encode_batch(_Raising(gen), num_threads=threads, flat=flat)
    # After the iteration error, the surrogate comes out when it came first, not otherwise.
    gen[5], gen[690] = texts[5], _fresh("\ud800")
    for threads in (1, 2, 3):
        with pytest.raises(UnicodeEncodeError):
            m.encode_batch(_Raising(gen), num_threads=threads)
    gen[690], gen[710] = texts[690], _fresh("\ud800")
    for threads in (1, 2, 3):
        with pytest.raises(RuntimeError, match="boom at 700"):
            m.encode_batch(_Raising(gen), num_threads=threads)


class _Lying(list):
    """A sequence whose len() is wrong (more items than iteration gives)."""

    def __len__(self) -> int:
        return super().__len__() + 5


def test_batch_whose_length_changes_is_rejected():
    m = Unigram.from_pieces(RICH)
    for flat in (False, True):
        with pytest.raises(ValueError, match="changed length"):
            m.encode_batch(_Lying(["ab"] * 100), num_threads=2, flat=flat)
        # One thread reads by iteration alone: the items there are all it encodes.
        one = m.encode_batch(_Lying(["ab"] * 100), num_threads=1, flat=flat)
        assert len(one if not flat else one[1][1:]) == 100


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_batch_in_worker_processes(ctx):
    if ctx not in mp.get_all_start_methods():
        pytest.skip(f"{ctx} not available")
    m = Unigram.from_pieces(RICH)
    # Use the pool in the parent first so a forked child inherits a used pool.
    want = _enc(m, alpha=0.3, seed=5, num_threads=2)
    fn = functools.partial(m.encode_batch, alpha=0.3, seed=5, num_threads=2)
    with mp.get_context(ctx).Pool(2) as pool:
        got = pool.map(fn, [TEXTS, TEXTS])
    for g in got:
        assert [x.tolist() for x in g] == want


# --------------------------------------------------------------------------- API & bad input


def test_basic_api():
    m = Unigram.from_pieces([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk=0)
    assert m.vocab_size == 3 == len(m)
    assert m.unk_id == 0
    assert m.id_to_piece(1) == "a" and m.piece_to_id("b") == 2 and m.piece_to_id("zz") is None
    assert m.encode("").tolist() == [] and m.encode_as_pieces("") == []
    # Consecutive unknown characters merge into one UNK token.
    assert m.encode("axyzb").tolist() == [1, 0, 2]
    assert m.encode_as_pieces("axyzb") == ["a", "xyz", "b"]
    # NUL and control characters are ordinary (unknown) characters.
    assert m.encode_as_pieces("a\x00\x01b") == ["a", "\x00\x01", "b"]
    assert m.encode(b"ab").tolist() == [1, 2]
    assert m.decode([1, 2, 1]) == "aba" and m.decode(np.array([1, 0], dtype=np.int32)) == "a \u2047 "
    assert m.nbest("ab", 0) == []
    assert m.entropy("", 1.0) == 0.0 and m.log_partition("", 1.0) == 0.0
    assert m.sample("ab", 0, alpha=1.0) == []
    assert "Unigram(" in repr(m)
    assert Unigram.from_bytes(m.to_bytes()) == m


def test_byte_level_model():
    pieces = [(bytes([b]), -6.0) for b in range(256)] + [("é".encode(), -1.0), (b"\xa9x", -1.0)]
    m = Unigram.from_pieces(pieces, byte_level=True)
    assert m.byte_level
    # Byte-level lattices may cut inside characters: "é" + "x" can split as \xc3 | \xa9x.
    ids = m.encode("éx").tolist()
    assert m.decode_bytes(ids) == "éx".encode()
    assert m.encode(b"\xff\xfe").tolist() == [255, 254]
    assert m.log_partition(b"\xc3\xa9x", 0.0) == pytest.approx(math.log(3))


def test_bad_input():
    m = Unigram.from_pieces([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk=0)
    with pytest.raises(ValueError, match="offset 1"):
        m.encode(b"a\xffb")
    with pytest.raises(TypeError, match="str or bytes"):
        m.encode(12)  # type: ignore[arg-type]
    for single in ("ab", b"ab", bytearray(b"ab"), memoryview(b"ab")):
        with pytest.raises(TypeError, match=f"not a single {type(single).__name__}"):
            m.encode_batch(single)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        m.encode_batch(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"texts\[1\].*offset 0"):
        m.encode_batch(["a", b"\xff"])
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            m.encode("ab", alpha=bad)
        with pytest.raises(ValueError, match="alpha"):
            m.entropy("ab", bad)
        with pytest.raises(ValueError, match="alpha"):
            m.sample("ab", 2, alpha=bad)
    with pytest.raises(ValueError, match="method"):
        m.encode("ab", alpha=0.1, method="gibbs")
    with pytest.raises(ValueError, match="out of range"):
        m.decode([0, 3])
    with pytest.raises(ValueError, match="out of range"):
        m.decode([-1])
    with pytest.raises(ValueError, match="out of range"):
        m.id_to_piece(99)
    with pytest.raises(TypeError):
        m.decode("ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.nbest("ab", -1)
    with pytest.raises(ValueError, match="not a segmentation"):
        m.log_prob("ab", [2, 1])
    with pytest.raises(ValueError, match="num_threads"):
        m.encode_batch(["a"], num_threads=0)
    # Without an UNK piece an uncovered character is an error that names where it is.
    m2 = Unigram.from_pieces([("a", -1.0)])
    with pytest.raises(ValueError, match="cannot be segmented.*offset 1"):
        m2.encode("ab")
    with pytest.raises(ValueError, match="cannot be segmented"):
        m2.encode("ab", alpha=0.5)
    with pytest.raises(ValueError, match="cannot be segmented"):
        m2.nbest("ab", 3)
    # Hostile vocabularies.
    with pytest.raises(ValueError, match="duplicate"):
        Unigram.from_pieces([("a", -1.0), ("a", -2.0)])
    with pytest.raises(ValueError, match="non-finite"):
        Unigram.from_pieces([("a", float("nan"))])
    with pytest.raises(ValueError, match="empty"):
        Unigram.from_pieces([])
    with pytest.raises(TypeError):
        Unigram.from_pieces("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Unigram.from_pieces([("a",)])  # type: ignore[list-item]
    with pytest.raises(probcraft.ModelFormatError):
        Unigram.from_bytes(b"garbage")
    with pytest.raises(probcraft.ModelFormatError):
        Unigram.from_bytes(m.to_bytes()[:-3])
    with pytest.raises(OSError):
        Unigram.from_sentencepiece("/nonexistent/model.model")
    with pytest.raises(TypeError):
        Unigram.from_sentencepiece(3.5)  # type: ignore[arg-type]


def test_long_line_linear_memory_paths():
    # A multi-megabyte single line through Viterbi and perfect sampling (O(L) passes).
    m = Unigram.from_pieces(RICH)
    text = "abab" * 1_000_000
    v = m.encode(text)
    assert v.size > 0
    s = m.encode(text, alpha=0.2, seed=1)
    assert m.decode(s) == text and m.decode(v) == text
    assert math.isfinite(m.log_partition(text[:200_000], 0.2))


def test_encode_batch_indices_equal_per_item_streams() -> None:
    m = Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5), ("ba", -1.7)])
    texts = ["abab", "baba", "ab", "", "babab", "aab"]
    idx = [7, 8, 9, 3, 4, 100]  # shuffled/filtered rows: three runs
    ids, offs = m.encode_batch(texts, alpha=0.5, seed=11, flat=True, indices=idx)
    for k, (t, i) in enumerate(zip(texts, idx)):
        alone, _ = m.encode_batch([t], alpha=0.5, seed=11, flat=True, stream_offset=i)
        assert ids[offs[k]:offs[k + 1]].tolist() == alone.tolist()
    with pytest.raises(ValueError, match="indices"):
        m.encode_batch(texts, alpha=0.5, seed=1, indices=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        m.encode_batch(["a"], alpha=0.5, seed=1, indices=[-1])


# --------------------------------------------------------------------------- word caches

WORDY = [("<unk>", 0.0), ("▁", -1.0), ("a", -2.0), ("b", -2.5), ("ab", -2.2), ("▁ab", -2.0),
         ("▁a", -3.0), ("ba", -2.2), ("▁b", -2.9), ("bab", -3.1)]

_NO_CACHE = r"""
import json, sys, probcraft
src, texts = json.loads(sys.stdin.read())
m = probcraft.Unigram.from_pieces([tuple(p) for p in src], unk=0) if isinstance(src, list) else \
    probcraft.Unigram.from_sentencepiece(src)
out = [m.encode_batch(texts, num_threads=1, **kw) for kw in
       (dict(), dict(alpha=0.1, seed=3), dict(alpha=1.0, seed=4), dict(alpha=0.0, seed=5))]
print(json.dumps([[x.tolist() for x in o] for o in out]))
"""


def _without_word_caches(src, texts):
    """Viterbi and perfect-sampling batches computed with PROBCRAFT_WORD_CACHE=0 (the
    full-line passes), in a subprocess since the switch is read once per process."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, PROBCRAFT_WORD_CACHE="0")
    r = subprocess.run([sys.executable, "-c", _NO_CACHE], input=json.dumps([src, texts]),
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout)


def _with_word_caches(m, texts):
    return [[x.tolist() for x in m.encode_batch(texts, num_threads=n, **kw)]
            for n, kw in ((1, dict()), (2, dict(alpha=0.1, seed=3)), (1, dict(alpha=1.0, seed=4)),
                          (2, dict(alpha=0.0, seed=5)))]


def test_word_caches_give_the_full_pass_results():
    # Texts with the word mark: Viterbi and perfect sampling go word by word from the
    # per-thread caches, which must give the full-line passes' ids for the same seeds
    # (unknown 'x', long words over the 48-byte limit and repeated words included).
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("▁▁abx"), size=rng.integers(0, 40))) for _ in range(300)]
    texts += ["▁" + "ab" * 30 + "▁ab", "▁ab" * 50, "▁x▁xx▁ab"]
    m = Unigram.from_pieces(WORDY, unk=0)
    got = _with_word_caches(m, texts)
    assert got == _with_word_caches(m, texts)  # warm caches
    assert got == _without_word_caches(WORDY, texts)
    # The single-text pieces API runs the full pass: the same draws as encode's cache.
    for t in texts[:100]:
        if "x" not in t:
            ids = m.encode(t, alpha=0.3, seed=11)
            assert [m.id_to_piece(int(i)) for i in ids] == m.encode_as_pieces(t, alpha=0.3, seed=11)


def test_word_caches_on_the_shared_corpus(shared_dir):
    path = shared_dir / "models" / "spm_en_botchan_1k.model"
    lines = [ln for ln in (shared_dir / "corpora" / "botchan.txt").read_text(encoding="utf-8")
             .split("\n") if ln][:1500]
    m = Unigram.from_sentencepiece(str(path))
    assert _with_word_caches(m, lines) == _without_word_caches(str(path), lines)


# --------------------------------------------------------------------------- large alpha, limits


def test_entropy_stays_exact_at_large_alpha():
    # "ab" ties with "a" + "b" (float32-exact scores), so several segmentations share the best
    # score and the entropy tends to log(#ties), not 0. The old `log Z − α·E[score]` form
    # multiplied the rounding of E[score] by α (12.8 nats for a 9.4-nat lattice at α = 5e6).
    pairs = [("a", -1.0), ("b", -2.0), ("ab", -3.0), ("ba", -3.5), ("aba", -4.25)]
    m = Unigram.from_pieces(pairs)
    table = {p: (i, s) for i, (p, s) in enumerate(pairs)}
    text = "abababab"
    tot = [sum(e[3] for e in p) for p in brute_paths(table, text, None, 0.0)]
    best = max(tot)
    for alpha in (1e2, 1e4, 1e6):
        logw = [alpha * (t - best) for t in tot]  # exact differences: no cancellation here
        lz = lse(logw)
        ent = -sum(math.exp(x - lz) * (x - lz) for x in logw)
        assert ent > 2.0  # 16 tied best segmentations
        assert m.entropy(text, alpha) == pytest.approx(ent, abs=1e-6)
        assert m.marginals(text, alpha)["entropy"] == pytest.approx(ent, abs=1e-6)


def test_alpha_above_the_limit_is_refused():
    m = Unigram.from_pieces([("a", -1.0), ("b", -2.0), ("ab", -3.0)])
    m.encode("ab", alpha=1e6, seed=0)
    for call in (
        lambda a: m.encode("ab", alpha=a, seed=0),
        lambda a: m.encode_batch(["ab"], alpha=a, seed=0),
        lambda a: m.sample("ab", 2, alpha=a, seed=0),
        lambda a: m.entropy("ab", a),
        lambda a: m.log_prob("ab", [2], a),
        lambda a: m.marginals("ab", a),
        lambda a: m.prefix_candidates("ab", a),
    ):
        with pytest.raises(ValueError, match="at most 1e6"):
            call(1.37e18)


def test_sampling_without_replacement_is_bounded():
    # 'ab'·200 has ~10^80 segmentations; a beam of 2^20 over 400 positions kept ~10^9 links
    # (minutes, tens of GB) before the limit.
    m = Unigram.from_pieces([("a", -1.0), ("b", -1.0), ("ab", -1.5), ("ba", -1.5), ("aba", -2.0)])
    with pytest.raises(probcraft.LimitError, match="partial paths"):
        m.sample("ab" * 200, 2**20, alpha=0.1, seed=1, replace=False)
    # Within the limit the same text still samples.
    assert len(m.sample("ab" * 200, 1000, alpha=0.1, seed=1, replace=False)) == 1000


def test_interrupt_while_numpy_api_resolves_is_a_keyboard_interrupt(tmp_path):
    # rust-numpy resolves numpy's C API on first use, running `numpy.lib.NumpyVersion`; a
    # Ctrl-C pending then (after a long first lattice call without the GIL) made it panic: a
    # PanicException instead of KeyboardInterrupt. Simulated: NumpyVersion raises it once.
    script = tmp_path / "interrupt.py"
    script.write_text(
        "import numpy.lib\n"
        "real = numpy.lib.NumpyVersion\n"
        "def once(*a):\n"
        "    numpy.lib.NumpyVersion = real\n"
        "    raise KeyboardInterrupt\n"
        "numpy.lib.NumpyVersion = once\n"
        "try:\n"
        "    import probcraft\n"
        "    probcraft.Unigram.from_pieces([('a', -1.0), ('b', -2.0)]).encode('ab')\n"
        "    print('no interrupt')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupt')\n"
        "except BaseException as e:\n"
        "    print(type(e).__name__)\n"
    )
    import subprocess

    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["interrupt"], r.stdout + r.stderr


def test_out_of_range_integer_arguments_are_named():
    m = Unigram.from_pieces([("a", -1.0), ("b", -2.0), ("ab", -3.0)])
    cases = [
        ("seed", lambda: m.encode("ab", alpha=0.1, seed=-1)),
        ("seed", lambda: m.encode_as_pieces("ab", alpha=0.1, seed=2**64)),
        ("seed", lambda: m.encode_batch(["ab"], alpha=0.1, seed=-1)),
        ("num_threads", lambda: m.encode_batch(["ab"], num_threads=-2)),
        ("stream_offset", lambda: m.encode_batch(["ab"], alpha=0.1, seed=1, stream_offset=-1, flat=True)),
        ("k", lambda: m.nbest("ab", -1)),
        ("n", lambda: m.sample("ab", -1, alpha=0.1)),
        ("seed", lambda: m.sample("ab", 1, alpha=0.1, seed=-5)),
        ("id -1", lambda: m.id_to_piece(-1)),
        ("id 1180591620717411303424", lambda: m.id_to_piece(2**70)),
        ("id 1180591620717411303424", lambda: m.score(2**70)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()


def test_batch_indices_must_be_integers():
    m = Unigram.from_pieces([("a", -1.0), ("b", -2.0), ("ab", -3.0)])
    for bad in ([0.5, 1.7], ["0", "1"], [[0], [1]]):
        with pytest.raises(TypeError, match="indices"):
            m.encode_batch(["a", "b"], alpha=0.1, seed=1, indices=bad)
    got = m.encode_batch(["a", "b"], alpha=0.1, seed=1, indices=np.array([3, 7], np.uint8))
    want = m.encode_batch(["a", "b"], alpha=0.1, seed=1, indices=[3, 7])
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


def test_batch_arrow_flag_is_checked():
    m = Unigram.from_pieces([("a", -1.0), ("b", -2.0), ("ab", -3.0)])
    for bad in ("foo", "LARGE", 1, 0, None):
        with pytest.raises(ValueError, match="arrow"):
            m.encode_batch(["ab"], arrow=bad)  # type: ignore[arg-type]
