"""Fourier densities against numpy reference implementations, scipy's gaussian_kde and
sklearn's GaussianMixture (fit time at equal parameter count, held-out NLL in the name)."""

from __future__ import annotations

import numpy as np
from compare import Case

import probcraft
from probcraft import FourierDensity


def _numpy_pdf(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Complex Horner in numpy: the fastest plain-numpy form (codex's cos/sin outer product
    # is ~10x slower still).
    z = np.exp(1j * np.pi * x)
    g = np.full(x.shape, a[-1], dtype=complex)
    for c in a[-2::-1]:
        g = g * z + c
    return (g.real**2 + g.imag**2) / (2 * np.sum(np.abs(a) ** 2))


def _numpy_cdf(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    n1 = len(a)
    c = np.array([np.sum(a[n:] * np.conj(a[: n1 - n])) for n in range(n1)])
    n = np.arange(1, n1)
    b = c[1:] / (1j * np.pi * n)
    z = np.exp(1j * np.pi * x)
    h = np.full(x.shape, b[-1], dtype=complex)
    for v in b[-2::-1]:
        h = h * z + v
    const = np.sum(b * (-1.0) ** n).real
    return np.clip((x + 1) / 2 + ((h * z).real - const) / c[0].real, 0, 1)


def _ten_gaussians() -> tuple[np.ndarray, np.ndarray]:
    u = np.random.default_rng(12).uniform(size=10)
    return -0.5 + 0.8 * u, (10 / 60) * (0.25 + 0.1 * u)


def cases(opts) -> list[Case]:
    m = 100_000 if opts.quick else 1_000_000
    rng = np.random.default_rng(0)
    a = rng.normal(size=33) + 1j * rng.normal(size=33)
    d = FourierDensity(a)
    x = rng.uniform(-1, 1, m)
    out: list[Case] = []
    g = f"fourier pdf N=32, {m} points"
    out += [
        Case(g, "numpy complex Horner", lambda: _numpy_pdf(a, x), items=m, ref=True),
        Case(g, "probcraft pdf 1 thread", lambda: d.pdf(x, num_threads=1), items=m),
        Case(g, "probcraft pdf 2 threads", lambda: d.pdf(x, num_threads=2), items=m),
        Case(g, "probcraft logpdf 1 thread", lambda: d.logpdf(x, num_threads=1), items=m),
    ]
    g = f"fourier cdf N=32, {m} points"
    out += [
        Case(g, "numpy Horner on b_n", lambda: _numpy_cdf(a, x), items=m, ref=True),
        Case(g, "probcraft cdf 1 thread", lambda: d.cdf(x, num_threads=1), items=m),
        Case(g, "probcraft cdf 2 threads", lambda: d.cdf(x, num_threads=2), items=m),
    ]
    g = f"fourier rvs N=32, {m} samples"
    grid = np.linspace(-1, 1, 4097)
    table = _numpy_cdf(a, grid)
    gen = np.random.default_rng(1)
    out += [
        Case(g, "numpy interp on a 4096-cell CDF table (approximate)",
             lambda: np.interp(gen.random(m), table, grid), items=m, ref=True),
        Case(g, "probcraft rvs 1 thread (exact inverse CDF)",
             lambda: d.rvs(m, seed=1, num_threads=1), items=m),
        Case(g, "probcraft rvs 2 threads", lambda: d.rvs(m, seed=1, num_threads=2), items=m),
    ]
    g = "fourier logpdf at 10^4 points (model from 10^4 data)"
    data = rng.normal(size=10_000)
    ev = rng.normal(size=10_000)
    try:
        from scipy.stats import gaussian_kde

        kde = gaussian_kde(data)
        out.append(Case(g, "scipy gaussian_kde.logpdf", lambda: kde.logpdf(ev), items=len(ev), ref=True))
    except ImportError:
        out.append(Case(g, "scipy gaussian_kde.logpdf", None, skip="scipy not installed", ref=True))
    fd = FourierDensity.fit(data, 14)
    out.append(Case(g, "probcraft logpdf (N=13 fit)", lambda: fd.logpdf(ev, num_threads=1), items=len(ev)))

    # Fit on the 10-Gaussian target: 14 complex coefficients (28 parameters) against a
    # 10-component GaussianMixture (29 parameters), which contains the target itself.
    n_fit = 100_000 if opts.quick else 1_000_000
    loc, sc = _ten_gaussians()
    gf = np.random.default_rng(5)
    comp = gf.integers(0, 10, 2 * n_fit)
    ally = gf.normal(loc[comp], sc[comp])
    train, test = ally[:n_fit], ally[n_fit:]
    fd14 = FourierDensity.fit(train, 14, domain="interval", num_threads=1)
    nll_f = fd14.nll(test)
    g = f"fourier fit {n_fit} points, ~29 parameters (held-out NLL in name)"
    try:
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(10, random_state=0).fit(train[:, None])
        nll_g = -gm.score(test[:, None])
        out.append(Case(g, f"sklearn GaussianMixture(10) NLL={nll_g:.4f}",
                        lambda: GaussianMixture(10, random_state=0).fit(train[:, None]),
                        items=n_fit, ref=True))
    except ImportError:
        out.append(Case(g, "sklearn GaussianMixture(10)", None, skip="scikit-learn not installed", ref=True))
    out.append(Case(g, f"probcraft fit(14, interval) 1 thread NLL={nll_f:.4f}",
                    lambda: FourierDensity.fit(train, 14, domain="interval", num_threads=1), items=n_fit))
    fr = FourierDensity.fit(train, 14, domain="real", num_threads=1)
    out.append(Case(g, f"probcraft fit(14, real) 1 thread NLL={fr.nll(test):.4f}",
                    lambda: FourierDensity.fit(train, 14, domain="real", num_threads=1), items=n_fit))
    out.append(Case(g, "probcraft fit(14, interval) 2 threads",
                    lambda: FourierDensity.fit(train, 14, domain="interval", num_threads=2), items=n_fit))
    _ = probcraft
    return out
