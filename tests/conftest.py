"""Fixtures shared by every test package."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Tests mirror the packages (core/, models/, segmentation/, classification/, cli/, plugin/,
# widgets/). A few tests reuse the tiny networks and movies that segmentation's tests build
# (``from test_inference import save_tiny``), wherever they live.
sys.path.insert(0, str(Path(__file__).parent / "segmentation"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: on a shared 2-core machine oversubscribed OpenMP threads
    made small networks ~30x slower; the thread count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
