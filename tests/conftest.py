"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: on a shared 2-core machine oversubscribed OpenMP threads
    made small networks ~30x slower; the thread count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
