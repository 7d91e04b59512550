"""The shared plumbing: build info, errors, panics, random streams, threads, fork, pickling."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import probcraft
from probcraft import _core


def test_build_info_reports_version_profile_simd() -> None:
    info = probcraft.build_info()
    assert info["version"] == probcraft.__version__
    assert info["profile"] in ("release", "debug")
    assert info["simd"] in info["simd_available"]
    assert "scalar" in info["simd_available"]


def test_forced_scalar_env_var() -> None:
    code = "import probcraft; print(probcraft.build_info()['simd'])"
    env = dict(os.environ, PROBCRAFT_SIMD="scalar")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scalar"


def test_set_simd_level_round_trip() -> None:
    before = probcraft.build_info()["simd"]
    try:
        assert probcraft.set_simd_level("scalar") == "scalar"
        assert probcraft.build_info()["simd"] == "scalar"
    finally:
        probcraft.set_simd_level(before)
    with pytest.raises(ValueError, match="unknown SIMD level"):
        probcraft.set_simd_level("sse9")


def test_panic_becomes_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="deliberate panic"):
        _core._panic_for_test()
    # The interpreter and the module are still usable afterwards.
    assert probcraft.derive_seed(1, 2) == probcraft.derive_seed(1, 2)


def test_exceptions_are_value_errors_and_pickle() -> None:
    for cls in (probcraft.ModelFormatError, probcraft.LimitError):
        assert issubclass(cls, ValueError)
        e = pickle.loads(pickle.dumps(cls("bad model at offset 3")))
        assert isinstance(e, cls) and "offset 3" in str(e)


def test_stream_values_are_frozen() -> None:
    # Same values as rust/rng.rs::frozen_values: reproducible across versions and platforms.
    assert probcraft.stream_u64(0, 0, 3).tolist() == [
        54250553255864759,
        6048555960454316217,
        18146738337781327362,
    ]
    assert probcraft.stream_u64(42, 7, 3).tolist() == [
        11076090470244575186,
        7916854751607074544,
        9429905980709277786,
    ]
    s = probcraft.Streams(42)
    assert np.array_equal(s.u64(7, 3), probcraft.stream_u64(42, 7, 3))
    u = s.uniform(3, 10_000)
    assert u.dtype == np.float64 and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02
    assert s.child(1).seed == probcraft.derive_seed(42, 1)


def test_stream_limits() -> None:
    with pytest.raises(probcraft.LimitError):
        probcraft.stream_u64(0, 0, 1 << 40)
    with pytest.raises(OverflowError):
        probcraft.stream_u64(-1, 0, 3)


def test_streams_pickle_deterministically() -> None:
    s = probcraft.Streams(123)
    b1, b2 = pickle.dumps(s), pickle.dumps(probcraft.Streams(123))
    assert b1 == b2
    t = pickle.loads(b1)
    assert t == s and hash(t) == hash(s)
    with pytest.raises(probcraft.ModelFormatError, match="magic"):
        probcraft.Streams._from_state(b"garbage!")
    with pytest.raises(probcraft.ModelFormatError, match="truncated"):
        probcraft.Streams._from_state(pickle.dumps(s)[:0] or b"PCst\x01\x00\x01")


def test_thread_policy() -> None:
    assert _core._parallel_probe(1, 4) == 1  # single item: serial
    assert _core._parallel_probe(1000, 2) == 2
    assert _core._parallel_probe(1000, 1) == 1
    with pytest.raises(ValueError, match="num_threads"):
        _core._parallel_probe(10, 0)


def test_no_threads_at_import() -> None:
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc/self/task to count threads")
    # numpy (OpenBLAS) may start its own threads; count only what probcraft adds.
    code = (
        "import os, numpy;"
        "n0 = len(os.listdir('/proc/self/task'));"
        "import probcraft;"
        "print(len(os.listdir('/proc/self/task')) - n0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 0, "importing probcraft started threads"


def test_one_thread_means_one_thread() -> None:
    """``num_threads=1`` runs on the calling thread: no call may start rayon's global pool
    (which would use every CPU and can hang a forked child)."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc/self/task to count threads")
    code = """
import os, numpy as np, probcraft
from probcraft import _core
n0 = len(os.listdir('/proc/self/task'))
_core._parallel_probe(100_000, 1)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, 200_000)
for dom in ("interval", "real"):
    d = probcraft.FourierDensity(rng.standard_normal((2, 9)) + 0j, domain=dom)
    for f in (d.pdf, d.logpdf, d.cdf):
        f(x, num_threads=1)
    d.ppf(np.clip(np.abs(x), 0, 1), num_threads=1)
    d.rvs(200_000, seed=1, num_threads=1)
    d.bin_mass(x - 0.5, x, num_threads=1)
    d.nll_grad(x, num_threads=1)
probcraft.FourierDensity.fit(x[:50_000], 5, domain="interval", steps=3, num_threads=1)
probcraft.FourierDensity.fit(np.stack([x[:50_000]] * 3), 5, domain="interval", steps=3,
                             num_threads=1)
probcraft.softmax(rng.standard_normal((512, 4096)).astype(np.float32), num_threads=1)
words = ["the cat sat on the mat", "a dog ran in the park", "cats and dogs"] * 200
m = probcraft.Unigram.train(words, 40, num_threads=1, progress=False)
m.encode_batch(words, num_threads=1)
print(len(os.listdir('/proc/self/task')) - n0)
"""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 0, "a num_threads=1 call started threads"


def _child_uses_pool(q: "mp.Queue[int]") -> None:
    q.put(_core._parallel_probe(10_000, 2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_pool_use_does_not_deadlock() -> None:
    assert _core._parallel_probe(10_000, 2) == 2  # parent has a live pool
    ctx = mp.get_context("fork")
    q: mp.Queue[int] = ctx.Queue()
    p = ctx.Process(target=_child_uses_pool, args=(q,))
    p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
        pytest.fail("forked child deadlocked using the thread pool")
    assert p.exitcode == 0
    assert q.get(timeout=5) == 2


def test_spawned_child_uses_pool() -> None:
    ctx = mp.get_context("spawn")
    q: mp.Queue[int] = ctx.Queue()
    p = ctx.Process(target=_child_uses_pool, args=(q,))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    assert q.get(timeout=5) == 2
