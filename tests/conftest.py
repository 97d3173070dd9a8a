"""Shared test settings: float64 checks, a seeded generator, a non-interactive plotting backend."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator; tests that sample take it so that failures reproduce."""
    return torch.Generator().manual_seed(20260101)
