"""Shared fixtures. Tests that need `../shared` (corpora, models) use `shared_dir` and skip
with a clear reason when it is absent, so the repository alone still passes."""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import settings

# `scripts/test.sh` picks "ci" under CI so a run there can be repeated exactly; locally the
# default profile draws fresh examples each run.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    if not (SHARED / "corpora").is_dir() or not (SHARED / "models").is_dir():
        pytest.skip(f"shared material not found at {SHARED} (corpora/ and models/ are needed)")
    return SHARED
