"""Shared fixtures: where the real sample data lives (``../shared``), skipping cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ``../shared``; skips the calling test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not available: {path} is missing (../shared is not checked out here)")
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()
