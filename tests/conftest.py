"""Shared test set-up: no display, no network, small data."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest


@pytest.fixture
def blobs():
    """A small, well separated 3-class problem: (X, y)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    X = centers[y] + rng.normal(0, 1.0, (300, 2))
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def ray_session():
    """One Ray for the whole test session, started (or joined, with RAY_ADDRESS) by hitl.distributed.connect."""
    pytest.importorskip("ray")
    from hitl import distributed

    info = distributed.connect(num_cpus=2)
    yield info
    distributed.shutdown()
