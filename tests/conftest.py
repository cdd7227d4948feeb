"""Shared fixtures: paths to the bundled data and a registry without outside entry points."""

from __future__ import annotations

from pathlib import Path

import pytest

from pesmith.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


@pytest.fixture
def registry() -> Registry:
    return Registry(entry_points=False)


@pytest.fixture(scope="session")
def si_train_path() -> Path:
    return DATA / "mlearn" / "Si_train.xyz"


@pytest.fixture(scope="session")
def li_train_path() -> Path:
    return DATA / "mlearn" / "Li_train.xyz"
