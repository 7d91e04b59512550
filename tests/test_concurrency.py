"""Concurrency (issue 8): 8 Python threads sharing one model call every method at once for a
fixed time and must reproduce the serial results exactly; the same seed gives the same
output for any thread count and SIMD level; a forked child does not deadlock after the
parent used the thread pool."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

import probcraft
from probcraft import Unigram

PIECES = [
    ("▁", -2.0), ("a", -2.5), ("b", -3.0), ("c", -3.5), ("ab", -2.2), ("abc", -3.1),
    ("bc", -2.8), ("ca", -3.3), ("日", -6.0), ("本", -6.0), ("日本", -5.0), ("é", -5.5),
]
TEXTS = ["abcabc" * 20, "cab" * 30 + "日本" * 5, "ééabc", "a", ""]
THREADS = 8
SECONDS = 2.0


def canon(x: Any) -> Any:
    """A comparable form of any result (arrays to lists, floats kept exact)."""
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return tuple(sorted((k, canon(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(canon(v) for v in x)
    return x


def lattice_calls(m: Unigram) -> list[tuple[str, Callable[[], Any]]]:
    calls: list[tuple[str, Callable[[], Any]]] = []
    for i, t in enumerate(TEXTS):
        calls += [
            (f"encode{i}", lambda t=t: m.encode(t)),
            (f"sample_enc{i}", lambda t=t, i=i: m.encode(t, alpha=0.7, seed=i)),
            (f"ffbs{i}", lambda t=t, i=i: m.encode(t, alpha=0.3, seed=i, method="ffbs")),
            (f"pieces{i}", lambda t=t: m.encode_as_pieces(t)),
            (f"nbest{i}", lambda t=t: m.nbest(t, 4)),
            (f"sample{i}", lambda t=t, i=i: m.sample(t, 3, alpha=0.5, seed=i)),
            (f"swor{i}", lambda t=t, i=i: m.sample(t, 3, alpha=0.5, seed=i, replace=False)),
            (f"logz{i}", lambda t=t: m.log_partition(t, 0.8)),
            # A second alpha on the same model exercises the cached-weights swap.
            (f"logz_b{i}", lambda t=t: m.log_partition(t, 1.3)),
            (f"entropy{i}", lambda t=t: m.entropy(t, 1.0)),
            (f"marg{i}", lambda t=t: m.marginals(t, 0.6)),
            (f"heal{i}", lambda t=t: m.prefix_candidates(t, 1.0)),
        ]
    calls += [
        ("batch", lambda: m.encode_batch(TEXTS * 4, alpha=0.5, seed=9, num_threads=2)),
        ("batch_flat", lambda: m.encode_batch(TEXTS, flat=True)),
        ("decode", lambda: m.decode(m.encode(TEXTS[1]))),
        ("bytes", lambda: m.to_bytes()),
        ("log_prob", lambda: m.log_prob(TEXTS[0], m.encode(TEXTS[0]), 1.0)),
        ("bad", lambda: _error(lambda: m.encode(b"\xff"))),
    ]
    return calls


def _error(f: Callable[[], Any]) -> str:
    try:
        f()
    except Exception as e:  # the error itself is the result to compare
        return f"{type(e).__name__}: {e}"
    return "no error"


def array_calls() -> list[tuple[str, Callable[[], Any]]]:
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((64, 97)).astype(np.float32)
    x64 = rng.standard_normal((33, 130))
    d = probcraft.FourierDensity(np.array([1.0, 0.4 + 0.2j, -0.1j, 0.05]))
    pts = np.linspace(-1, 1, 2001)
    return [
        ("softmax32", lambda: probcraft.softmax(x32)),
        ("logsm64", lambda: probcraft.log_softmax(x64, axis=0)),
        ("sparsemax", lambda: probcraft.sparsemax(x64)),
        ("entmax15", lambda: probcraft.entmax15(x32)),
        ("lse", lambda: probcraft.logsumexp(x64, num_threads=2)),
        ("pdf", lambda: d.pdf(pts)),
        ("cdf", lambda: d.cdf(pts)),
        ("rvs", lambda: d.rvs(500, seed=4)),
        ("ppf", lambda: d.ppf(np.linspace(0, 1, 257))),
    ]


def test_eight_threads_match_serial() -> None:
    m = Unigram.from_pieces(PIECES)
    calls = lattice_calls(m) + array_calls()
    serial = {name: canon(f()) for name, f in calls}
    errors: list[str] = []
    counts = [0] * THREADS
    stop = time.monotonic() + SECONDS
    barrier = threading.Barrier(THREADS)

    def worker(w: int) -> None:
        order = np.random.default_rng(w).permutation(len(calls))
        barrier.wait()
        j = 0
        while time.monotonic() < stop:
            name, f = calls[order[j % len(calls)]]
            j += 1
            try:
                got = canon(f())
            except Exception as e:  # pragma: no cover - reported below
                errors.append(f"{name}: {type(e).__name__}: {e}")
                return
            if got != serial[name]:
                errors.append(f"thread {w}: {name} differs from the serial result")
                return
            counts[w] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "deadlock: a worker thread did not finish"
    assert not errors, errors[:5]
    # Every thread made progress through the whole list (no starvation behind a lock).
    assert min(counts) >= len(calls), counts


def test_same_seed_any_thread_count() -> None:
    m = Unigram.from_pieces(PIECES)
    texts = [("abc" * (i % 17) + "日本" * (i % 3)) for i in range(300)]
    ref = m.encode_batch(texts, alpha=0.4, seed=123, num_threads=1, flat=True)
    for nt in (2, 3, 8):
        got = m.encode_batch(texts, alpha=0.4, seed=123, num_threads=nt, flat=True)
        assert canon(got) == canon(ref), nt
    # Split batches with stream_offset reproduce the whole.
    a = m.encode_batch(texts[:100], alpha=0.4, seed=123, flat=True)
    b = m.encode_batch(texts[100:], alpha=0.4, seed=123, stream_offset=100, flat=True)
    assert np.array_equal(np.concatenate([a[0], b[0]]), ref[0])
    d = probcraft.FourierDensity(np.array([1.0, 0.4 + 0.2j, -0.1j]))
    r1 = d.rvs(50_000, seed=5, num_threads=1)
    for nt in (2, 8):
        assert np.array_equal(d.rvs(50_000, seed=5, num_threads=nt), r1)


@pytest.fixture()
def simd_levels():
    before = probcraft.build_info()["simd"]
    yield
    probcraft.set_simd_level(before)


def test_same_seed_any_simd_level(simd_levels: None) -> None:
    """Seeded draws are identical at every SIMD level the CPU offers."""
    m = Unigram.from_pieces(PIECES)
    d = probcraft.FourierDensity(np.array([1.0, 0.4 + 0.2j, -0.1j, 0.05]), domain="real")
    texts = [("abc" * (i % 11) + "é") for i in range(50)]
    results = {}
    for level in ("scalar", "avx2", "avx512"):
        try:
            probcraft.set_simd_level(level)
        except ValueError:
            continue  # not available on this CPU
        if probcraft.build_info()["simd"] != level:
            continue
        results[level] = (
            canon(m.encode_batch(texts, alpha=0.5, seed=1, flat=True)),
            canon(m.sample(texts[7], 5, alpha=0.5, seed=2)),
            d.rvs(20_000, seed=3).tobytes(),
        )
    assert "scalar" in results
    first = next(iter(results.values()))
    for level, r in results.items():
        assert r[0] == first[0] and r[1] == first[1], level
        a, b = np.frombuffer(first[2]), np.frombuffer(r[2])
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=level)


def test_fourier_rvs_bitwise_across_simd_levels(simd_levels: None) -> None:
    # The portable sampler performs the AVX2 kernel's exact fused operations.
    d = probcraft.FourierDensity(np.array([1.0, 0.4 + 0.2j, -0.1j, 0.05]), domain="real")
    levels = probcraft.build_info()["simd_available"]
    if len(levels) < 2:
        pytest.skip("only one SIMD level on this CPU")
    draws = []
    for level in levels:
        probcraft.set_simd_level(level)
        draws.append(d.rvs(20_000, seed=3).tobytes())
        draws.append(d.ppf(np.linspace(0.001, 0.999, 999)).tobytes())
    assert len(set(draws[0::2])) == 1 and len(set(draws[1::2])) == 1


def _child(conn: Any) -> None:
    m = Unigram.from_bytes(conn.recv())
    out = m.encode_batch(TEXTS * 50, alpha=0.5, seed=3, num_threads=2, flat=True)
    p = probcraft.softmax(np.ones((256, 64)), num_threads=2)
    conn.send((out[0].tobytes(), float(p.sum())))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_fork_after_use_does_not_deadlock() -> None:
    m = Unigram.from_pieces(PIECES)
    # Start the pools in the parent first: rayon's global pool does not survive fork().
    ref = m.encode_batch(TEXTS * 50, alpha=0.5, seed=3, num_threads=2, flat=True)
    probcraft.softmax(np.ones((256, 64)), num_threads=2)
    ctx = mp.get_context("fork")
    for _ in range(2):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_child, args=(child,))
        p.start()
        parent.send(m.to_bytes())
        assert parent.poll(60), "forked child deadlocked"
        ids, total = parent.recv()
        p.join(30)
        assert p.exitcode == 0
        assert ids == ref[0].tobytes() and total == pytest.approx(256.0)


def test_fork_while_other_threads_run() -> None:
    """fork() while another thread is inside a batch call: the child must still work."""
    m = Unigram.from_pieces(PIECES)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            m.encode_batch(TEXTS * 20, num_threads=2)

    t = threading.Thread(target=busy)
    t.start()
    try:
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:  # child: exit code says whether it worked
            try:
                r = m.encode_batch(TEXTS * 20, num_threads=2)
                os._exit(0 if len(r) == 100 else 1)
            except BaseException:
                os._exit(2)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                pytest.fail("forked child deadlocked")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        t.join()


def test_default_thread_count_follows_the_environment(monkeypatch):
    # The CPU count behind the default is found once; the environment variables are read at
    # every call, so setting them from Python takes effect at once.
    monkeypatch.delenv("PROBCRAFT_NUM_THREADS", raising=False)
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    cpus = probcraft.build_info()["default_threads"]
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("RAYON_NUM_THREADS", "5")
    assert probcraft.build_info()["default_threads"] == 5
    monkeypatch.setenv("PROBCRAFT_NUM_THREADS", "3")
    assert probcraft.build_info()["default_threads"] == 3
    monkeypatch.delenv("PROBCRAFT_NUM_THREADS")
    monkeypatch.delenv("RAYON_NUM_THREADS")
    assert probcraft.build_info()["default_threads"] == cpus
    m = Unigram.from_pieces(PIECES)
    assert [x.tolist() for x in m.encode_batch(TEXTS)] == [m.encode(t).tolist() for t in TEXTS]
