"""Shared fixtures. Tests that need `../shared` (corpora, models) use `shared_dir` and skip
with a clear reason when it is absent, so the repository alone still passes."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    if not (SHARED / "corpora").is_dir() or not (SHARED / "models").is_dir():
        pytest.skip(f"shared material not found at {SHARED} (corpora/ and models/ are needed)")
    return SHARED
