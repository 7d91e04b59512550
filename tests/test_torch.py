"""probcraft.torch: autograd Functions checked with torch.autograd.gradcheck in float64."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import probcraft  # noqa: E402
import probcraft.torch as pt  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402


def _x(shape, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * spread).requires_grad_()


def test_import_probcraft_does_not_import_torch() -> None:
    code = "import sys, probcraft, probcraft.data, probcraft.arrow, probcraft.ray; " \
           "print(any(m in sys.modules for m in ('torch', 'ray', 'pyarrow', 'datasets')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


MAPS = [
    ("softmax", lambda x: pt.softmax(x, -1, temperature=0.7)),
    ("log_softmax", lambda x: pt.log_softmax(x, 0)),
    ("logsumexp", lambda x: pt.logsumexp(x, 1)),
    ("logsumexp_keepdim", lambda x: pt.logsumexp(x, 0, keepdim=True)),
    ("sparsemax", lambda x: pt.sparsemax(x, -1)),
    ("entmax15", lambda x: pt.entmax15(x, -1)),
    ("entmax", lambda x: pt.entmax(x, 1.3, -1)),
    ("taylor_softmax", lambda x: pt.taylor_softmax(x, 2, -1)),
    ("topk_softmax", lambda x: pt.topk_softmax(x, 3, -1)),
    ("perturbmax_gaussian", lambda x: pt.perturbmax(x, "gaussian", -1)),
    ("perturbmax_logistic", lambda x: pt.perturbmax(x, "logistic", -1, n_points=512)),
]


@pytest.mark.parametrize("name,fn", MAPS, ids=[m[0] for m in MAPS])
def test_maps_gradcheck(name: str, fn) -> None:
    x = _x((3, 6), seed=len(name))
    assert gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_maps_match_numpy_and_torch_reference() -> None:
    x = _x((4, 7), seed=1)
    assert torch.allclose(pt.softmax(x), torch.softmax(x, -1))
    assert torch.allclose(pt.log_softmax(x, 0), torch.log_softmax(x, 0))
    assert torch.allclose(pt.logsumexp(x, -1), torch.logsumexp(x, -1))
    np.testing.assert_allclose(pt.sparsemax(x).detach().numpy(), probcraft.sparsemax(x.detach().numpy()))
    entmax = pytest.importorskip("entmax")
    assert torch.allclose(pt.entmax15(x), entmax.entmax15(x, dim=-1), atol=1e-12)
    assert torch.allclose(pt.sparsemax(x), entmax.sparsemax(x, dim=-1), atol=1e-12)


def test_entmax_alpha_gradient() -> None:
    x = _x((3, 5), seed=2)
    alpha = torch.tensor([[1.3], [1.6], [2.2]], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, a: pt.entmax(x, a, -1), (x, alpha), eps=1e-6, atol=1e-6, rtol=1e-4)
    shared = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, a: pt.entmax(x, a, -1), (x, shared), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_zero_copy_and_layouts() -> None:
    x = torch.randn(5, 8, dtype=torch.float32)
    y = pt.softmax(x)
    # The result is the kernel's own buffer handed over by from_numpy (no copy after it).
    assert y.dtype == torch.float32 and y.is_contiguous()
    xt = torch.randn(8, 5, dtype=torch.float64).t()  # non-contiguous input
    assert torch.allclose(pt.softmax(xt, -1), torch.softmax(xt, -1))
    xh = torch.randn(2, 4).to(torch.bfloat16)
    assert pt.softmax(xh).dtype == torch.bfloat16


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        pt.softmax(np.zeros(3))  # type: ignore[arg-type]
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            pt.softmax(torch.zeros(3, device="cuda"))
    with pytest.raises(ValueError):
        pt.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 5]))


LOSSES = [
    ("cross_entropy", lambda x, t: pt.cross_entropy(x, t)),
    ("cross_entropy_sum_ignore", lambda x, t: pt.cross_entropy(x, torch.where(t == 1, -100, t), reduction="sum")),
    ("cross_entropy_none", lambda x, t: pt.cross_entropy(x, t, reduction="none")),
    ("sparsemax_loss", lambda x, t: pt.sparsemax_loss(x, t)),
    ("entmax_loss", lambda x, t: pt.entmax_loss(x, t, alpha=1.5, reduction="none")),
    ("topk_softmax_loss", lambda x, t: pt.topk_softmax_loss(x, t, k=3)),
    ("margin_softmax_loss", lambda x, t: pt.margin_softmax_loss(torch.tanh(x), t, 0.2, 5.0)),
    ("tailr_loss", lambda x, t: pt.tailr_loss(x, t, gamma=0.3)),
    ("emo_loss", lambda x, t: pt.emo_loss(x, t, np.random.default_rng(0).standard_normal((6, 4)))),
]


@pytest.mark.parametrize("name,fn", LOSSES, ids=[m[0] for m in LOSSES])
def test_losses_gradcheck(name: str, fn) -> None:
    x = _x((4, 6), seed=3)
    t = torch.tensor([0, 1, 5, 2])
    assert gradcheck(lambda x: fn(x, t), (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_cross_entropy_matches_torch() -> None:
    x = _x((5, 7), seed=4)
    t = torch.tensor([0, 6, 3, -100, 2])
    a = pt.cross_entropy(x, t)
    b = torch.nn.functional.cross_entropy(x, t)
    assert torch.allclose(a, b)
    ga, = torch.autograd.grad(a, x)
    gb, = torch.autograd.grad(b, x)
    assert torch.allclose(ga, gb)
    # Classes on another axis (dim=1 of a 3-d tensor).
    x3 = _x((2, 5, 3), seed=5)
    t3 = torch.tensor([[0, 4, 1], [2, 2, 3]])
    assert torch.allclose(pt.cross_entropy(x3, t3, dim=1), torch.nn.functional.cross_entropy(x3, t3))


@pytest.mark.parametrize("domain", ["real", "interval"])
@pytest.mark.parametrize("channels", [None, 2])
def test_fourier_logpdf_gradcheck(domain: str, channels) -> None:
    g = torch.Generator().manual_seed(7)
    shape = (4,) if channels is None else (channels, 4)
    a = torch.complex(torch.randn(*shape, generator=g, dtype=torch.float64),
                      torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()
    if domain == "real":
        x = (torch.randn(*(5,) if channels is None else (channels, 5), generator=g, dtype=torch.float64) * 2).requires_grad_()
        s = torch.tensor(1.3 if channels is None else [1.3, 0.7], dtype=torch.float64, requires_grad=True)
        o = torch.tensor(0.2 if channels is None else [0.2, -0.4], dtype=torch.float64, requires_grad=True)
        fn = lambda x, a, s, o: pt.fourier_logpdf(x, a, s, o, domain="real")  # noqa: E731
        assert gradcheck(fn, (x, a, s, o), eps=1e-6, atol=1e-6, rtol=1e-4)
    else:
        x = (torch.rand(*(5,) if channels is None else (channels, 5), generator=g, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
        fn = lambda x, a: pt.fourier_logpdf(x, a, domain="interval")  # noqa: E731
        assert gradcheck(fn, (x, a), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_fourier_logpdf_matches_density_and_shared_points() -> None:
    a = np.array([[1.0, 0.3j, -0.2], [1.0, -0.5, 0.1j]])
    d = probcraft.FourierDensity(a, domain="real", scale=[1.0, 2.0], offset=[0.0, 0.5])
    x = torch.linspace(-3, 3, 11, dtype=torch.float64, requires_grad=True)
    at = torch.tensor(a, requires_grad=True)
    lp = pt.fourier_logpdf(x, at, torch.tensor([1.0, 2.0], dtype=torch.float64),
                           torch.tensor([0.0, 0.5], dtype=torch.float64))
    np.testing.assert_allclose(lp.detach().numpy(), d.logpdf(x.detach().numpy()), rtol=1e-12)
    # Shared points: the x-gradient sums both channels' contributions.
    assert gradcheck(lambda x: pt.fourier_logpdf(x, at.detach(), domain="real"), (x,), eps=1e-6, atol=1e-6)
    # Training the coefficients by gradient descent lowers the NLL.
    data = torch.tensor(np.random.default_rng(0).normal(1.0, 0.5, 400))
    c = torch.tensor([1.0 + 0j, 0.0, 0.0], requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        nll = -pt.fourier_logpdf(data, c).mean()
        nll.backward()
        opt.step()
        first = first if first is not None else nll.item()
    assert nll.item() < first - 0.1
