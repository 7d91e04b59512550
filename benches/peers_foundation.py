"""Foundation: per-item random streams against numpy's generators."""

from __future__ import annotations

from compare import Case

import numpy as np

import probcraft


def cases(opts) -> list[Case]:
    n = 1 << (16 if opts.quick else 20)
    s = probcraft.Streams(1)
    g = np.random.default_rng(1)
    return [
        Case("rng: 2^k uniforms", "numpy default_rng().random", lambda: g.random(n), items=n, ref=True),
        Case("rng: 2^k uniforms", "probcraft Streams.uniform", lambda: s.uniform(0, n), items=n),
    ]
