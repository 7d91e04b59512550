#!/usr/bin/env python3
"""Sparsity of the softmax family: how many entries each map keeps as the scores sharpen.

    python examples/softmax_sparsity.py OUT_DIR

Writes OUT_DIR/softmax_sparsity.png: left, the fraction of non-zero probabilities against the
temperature-like scale of Gaussian scores; right, the output of each map on one row.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import probcraft  # noqa: E402

MAPS = {
    "softmax": lambda x: probcraft.softmax(x),
    "top-k softmax (k=8)": lambda x: probcraft.topk_softmax(x, 8),
    "1.5-entmax": lambda x: probcraft.entmax15(x),
    "entmax α=1.25": lambda x: probcraft.entmax(x, alpha=1.25),
    "sparsemax": lambda x: probcraft.sparsemax(x),
    "Taylor softmax": lambda x: probcraft.taylor_softmax(x),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=pathlib.Path)
    ap.add_argument("--n", type=int, default=256, help="scores per row")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((512, args.n))
    scales = np.geomspace(0.1, 30, 25)
    nonzero = {name: [] for name in MAPS}
    for s in scales:
        for name, f in MAPS.items():
            nonzero[name].append(float((f(s * z) > 0).mean()))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, v in nonzero.items():
        ax1.semilogx(scales, v, label=name)
    ax1.set_xlabel("score scale (inverse temperature)")
    ax1.set_ylabel("fraction of non-zero probabilities")
    ax1.legend(fontsize=8)
    row = np.sort(z[0])[::-1][:32] * 3
    for name, f in MAPS.items():
        ax2.plot(f(row), marker=".", label=name)
    ax2.set_xlabel("rank of the score")
    ax2.set_ylabel("probability")
    ax2.set_title("one row of scores, 3 × N(0, 1), top 32")
    fig.tight_layout()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "softmax_sparsity.png"
    fig.savefig(out, dpi=100)
    (args.out_dir / "softmax_sparsity.json").write_text(json.dumps(
        {"scales": scales.tolist(), "nonzero": nonzero}))
    for name, v in nonzero.items():
        print(f"{name:22s} non-zero at scale 0.1: {v[0]:.3f}, at scale 30: {v[-1]:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
