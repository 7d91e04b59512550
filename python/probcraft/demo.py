"""The main job, end to end, on data every CPython ships (``python -m probcraft.demo``).

1. Builds a corpus from Python's own ``pydoc_data`` topic texts.
2. ``probcraft train``: trains a 2 000-piece unigram model on it (a SentencePiece ``.model``).
3. ``probcraft encode``: tokenizes the corpus with exact stochastic segmentation (α = 0.1,
   per-line seeds) into ``ids.npy`` + ``ids.offsets.npy``, and checks that any line can be
   reproduced alone and that ``probcraft decode`` gives the text back.
4. Prints a summary (throughput, tokens, segmentation entropy), then short runs of the other
   engines.

Files go to ``--workdir`` (default: a fresh temporary directory).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time
from typing import Any

import numpy as np

import probcraft


def _streams() -> None:
    t0 = time.perf_counter()
    u = probcraft.Streams(2024).uniform(0, 1_000_000)
    dt = time.perf_counter() - t0
    print(f"streams: 1e6 uniforms in {dt * 1e3:.1f} ms, mean {u.mean():.4f} (expect 0.5)")


def _fourier() -> None:
    g = np.random.default_rng(2024)
    data = np.concatenate([g.normal(-2.0, 0.5, 500_000), g.laplace(1.5, 1.0, 500_000)])
    t0 = time.perf_counter()
    d = probcraft.FourierDensity.fit(data, 16)
    dt = time.perf_counter() - t0
    x = np.linspace(-6, 6, 1_000_000)
    t1 = time.perf_counter()
    d.pdf(x)
    dp = time.perf_counter() - t1
    s = d.rvs(1_000_000, seed=1)
    print(f"fourier: fit 16 coeffs to 1e6 points in {dt:.2f} s (NLL {d.fit_info['nll']:.4f}), "
          f"pdf 1e6 points in {dp * 1e3:.1f} ms, rvs mean {s.mean():.3f} "
          f"(data {data.mean():.3f})")
def _corpus(path: pathlib.Path) -> list[str]:
    import pydoc_data.topics as topics

    lines = []
    for _, text in sorted(topics.topics.items()):
        lines.extend(ln.strip() for ln in text.splitlines() if ln.strip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _timed(f: Any) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _softmax() -> None:
    from . import losses

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 1024)).astype(np.float32)
    t0 = time.perf_counter()
    p = probcraft.softmax(x)
    first = time.perf_counter() - t0
    # The first call also faults in the output's pages and starts the thread pool.
    out = np.empty_like(x)
    dt = min(_timed(lambda: probcraft.softmax(x, out=out)) for _ in range(5))
    sp = probcraft.sparsemax(x)
    e15 = probcraft.entmax15(x)
    target = rng.integers(0, 1024, 4096)
    ce = losses.cross_entropy(x, target)
    print(
        f"softmax: 4096x1024 float32 in {dt * 1e3:.1f} ms ({x.nbytes / dt / 1e9:.2f} GB/s; "
        f"first call {first * 1e3:.1f} ms), "
        f"rows sum to 1 within {np.abs(p.sum(-1) - 1).max():.1e}; sparsemax keeps "
        f"{(sp > 0).sum(-1).mean():.1f} entries/row, entmax15 {(e15 > 0).sum(-1).mean():.1f}; "
        f"cross-entropy {ce:.3f} (log 1024 = {np.log(1024):.3f})"
    )



def _lattice(work: pathlib.Path, threads: int | None) -> None:
    from . import cli

    corpus = work / "corpus.txt"
    lines = _corpus(corpus)
    nbytes = corpus.stat().st_size
    model_path = work / "demo.model"
    t0 = time.perf_counter()
    rc = cli.main(["train", "-i", str(corpus), "--vocab-size", "2000", "-o", str(model_path),
                   "--seed", "0", "--character-coverage", "1.0", "--quiet"] + (["--threads", str(threads)] if threads else []))
    if rc != 0:
        raise SystemExit(f"probcraft train failed ({rc})")
    t_train = time.perf_counter() - t0
    ids_path = work / "ids.npy"
    t0 = time.perf_counter()
    rc = cli.main(["encode", "-m", str(model_path), "-i", str(corpus), "-o", str(ids_path),
                   "--alpha", "0.1", "--seed", "0", "--quiet"]
                  + (["--threads", str(threads)] if threads else []))
    if rc != 0:
        raise SystemExit(f"probcraft encode failed ({rc})")
    t_enc = time.perf_counter() - t0
    ids = np.load(ids_path)
    offs = np.load(work / "ids.offsets.npy")
    m = probcraft.Unigram.from_sentencepiece(model_path)
    # Any line reproduces alone from (seed, line number).
    for i in (0, len(lines) // 2, len(lines) - 1):
        alone = m.encode_batch([lines[i]], alpha=0.1, seed=0, flat=True, stream_offset=i)[0]
        assert np.array_equal(alone, ids[offs[i]:offs[i + 1]]), f"line {i} not reproducible"
    back = work / "back.txt"
    if cli.main(["decode", "-m", str(model_path), "-i", str(ids_path), "-o", str(back)]) != 0:
        raise SystemExit("probcraft decode failed")
    # The trained model keeps SentencePiece's whitespace rule (runs of spaces collapse), so
    # decoding restores each line up to that.
    round_trip = back.read_text(encoding="utf-8").splitlines() == [
        " ".join(ln.split()) for ln in lines
    ]
    t0 = time.perf_counter()
    vit_ids, _ = m.encode_batch(lines, flat=True, num_threads=threads)
    t_vit = time.perf_counter() - t0
    sample = lines[:: max(1, len(lines) // 500)]
    ent = float(np.mean([m.entropy(s, alpha=0.1) for s in sample]))
    print(f"corpus: {len(lines):,} lines, {nbytes / 1e6:.2f} MB of pydoc_data topics -> {work}")
    print(f"train: {m.vocab_size} pieces in {t_train:.2f} s -> {model_path.name}")
    print(f"encode (perfect sampling, alpha=0.1, seed=0): {ids.size:,} tokens "
          f"({nbytes / ids.size:.2f} bytes/token) in {t_enc:.2f} s "
          f"({nbytes / 1e6 / t_enc:.1f} MB/s end to end, file I/O included)")
    print(f"viterbi: {vit_ids.size:,} tokens, {nbytes / 1e6 / t_vit:.1f} MB/s in memory; "
          f"sampling adds {100 * (ids.size / vit_ids.size - 1):+.1f}% tokens")
    print(f"segmentation entropy at alpha=0.1: {ent:.2f} nats/line (mean over {len(sample)} lines)")
    print(f"decode round trip: {'exact (up to collapsed spaces)' if round_trip else 'DIFFERS'}")
    if not round_trip:
        raise SystemExit("decode did not reproduce the corpus")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m probcraft.demo", description=__doc__)
    ap.add_argument("--workdir", type=pathlib.Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']})")
    if a.workdir is None:
        with tempfile.TemporaryDirectory(prefix="probcraft-demo-") as d:
            _lattice(pathlib.Path(d), a.threads)
    else:
        a.workdir.mkdir(parents=True, exist_ok=True)
        _lattice(a.workdir, a.threads)
    _streams()
    _fourier()
    _softmax()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
