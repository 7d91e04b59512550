#!/usr/bin/env python3
"""Held-out NLL and KL against the number of parameters on the 10-Gaussian target:
probcraft FourierDensity (interval domain, n complex coefficients = 2n parameters) vs
sklearn GaussianMixture with the nearest parameter count (3k - 1) vs scipy gaussian_kde.

KL(p‖q) is estimated on the held-out sample as mean(log p_target - log q).

    python benches/fourier_table.py [--train 50000] [--test 200000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats
from sklearn.mixture import GaussianMixture

from probcraft import FourierDensity


def target() -> tuple[np.ndarray, np.ndarray]:
    u = np.random.default_rng(12).uniform(size=10)
    return -0.5 + 0.8 * u, (10 / 60) * (0.25 + 0.1 * u)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=200_000)
    opts = ap.parse_args()
    loc, sc = target()
    g = np.random.default_rng(2024)
    comp = g.integers(0, 10, opts.train + opts.test)
    y = g.normal(loc[comp], sc[comp])
    train, test = y[: opts.train], y[opts.train :]
    logp = np.logaddexp.reduce(stats.norm.logpdf(test[:, None], loc, sc), axis=1) - np.log(10)
    ent = -logp.mean()
    print(f"target: 10 equal Gaussians, entropy (held-out estimate) {ent:.4f} nats; "
          f"train {opts.train}, test {opts.test}")
    t0 = time.perf_counter()
    kde = gaussian = stats.gaussian_kde(train[:20000])
    kde_nll = -kde.logpdf(test[:20000]).mean()
    kde_kl = kde_nll - (-logp[:20000].mean())
    t_kde = time.perf_counter() - t0
    _ = gaussian
    hdr = f"{'coeffs':>6} {'params':>6} | {'fourier NLL':>11} {'KL':>7} {'s':>5} | " \
          f"{'GMM k':>5} {'params':>6} {'GMM NLL':>8} {'KL':>7} {'s':>5} | {'KDE NLL':>8} {'KL':>7}"
    print(hdr)
    print("-" * len(hdr))
    for n in (4, 6, 8, 10, 14, 20, 28):
        params = 2 * n
        t0 = time.perf_counter()
        d = FourierDensity.fit(train, n, domain="interval")
        tf = time.perf_counter() - t0
        fn = d.nll(test)
        k = max(1, round((params + 1) / 3))
        t0 = time.perf_counter()
        gm = GaussianMixture(k, random_state=0, n_init=1).fit(train[:, None])
        tg = time.perf_counter() - t0
        gn = -gm.score(test[:, None])
        print(f"{n:>6} {params:>6} | {fn:>11.4f} {fn - ent:>7.4f} {tf:>5.2f} | "
              f"{k:>5} {3 * k - 1:>6} {gn:>8.4f} {gn - ent:>7.4f} {tg:>5.2f} | "
              f"{kde_nll:>8.4f} {kde_kl:>7.4f}")
    print(f"(gaussian_kde: Scott bandwidth, 20000 training points, evaluated on 20000 test "
          f"points in {t_kde:.1f} s)")


if __name__ == "__main__":
    main()
