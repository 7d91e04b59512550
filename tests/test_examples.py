"""The examples in examples/ run and write what they promise."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def _run(name: str, *args: str) -> str:
    p = subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_tokenize_dataset(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    out = _run("tokenize_dataset.py", str(tmp_path), "--epochs", "2", "--workers", "2")
    rep = json.loads((tmp_path / "epochs.json").read_text())
    e0, e1 = rep["epochs"]
    assert e0["tokens"] > rep["viterbi_tokens"] and e1["tokens"] > rep["viterbi_tokens"]
    assert e0["tokens"] != e1["tokens"] or e0["first_pieces"] != e1["first_pieces"]
    assert "epoch 1" in out


def test_softmax_sparsity(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    _run("softmax_sparsity.py", str(tmp_path), "--n", "64")
    assert (tmp_path / "softmax_sparsity.png").read_bytes()[:8] == PNG
    nz = json.loads((tmp_path / "softmax_sparsity.json").read_text())["nonzero"]
    assert all(v == 1.0 for v in nz["softmax"])
    assert nz["sparsemax"][-1] < nz["1.5-entmax"][-1] < 1.0


def test_fourier_fit(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _run("fourier_fit.py", str(tmp_path), "--n", "6000", "--coeffs", "12")
    assert (tmp_path / "fourier_fit.png").read_bytes()[:8] == PNG
    scores = json.loads((tmp_path / "fourier_fit.json").read_text())
    fourier = scores["Fourier (12 coeffs)"]
    # The Fourier fit is a real density estimate: close to the others on held-out data.
    assert fourier > max(scores.values()) - 0.15


@pytest.mark.parametrize("module,needs", [
    ("probcraft.arrow", "pyarrow"),
    ("probcraft.data", "torch"),
    ("probcraft.ray", "pyarrow"),
    ("probcraft.torch", "torch"),
    ("probcraft._toy", None),
    ("probcraft", None),
    ("probcraft.lattice", None),
    ("probcraft.train", None),
    ("probcraft.softmax", None),
    ("probcraft.losses", None),
])
def test_doctests(module: str, needs) -> None:
    import doctest
    import importlib

    if needs:
        pytest.importorskip(needs)
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
