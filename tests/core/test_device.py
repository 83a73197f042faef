"""core/device: the one thread policy every job uses."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_cellnet.core import device as devices  # noqa: E402


def test_torch_threads_sets_for_the_block_and_restores_even_on_error():
    before = torch.get_num_threads()
    with devices.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), devices.torch_threads(1):
        raise RuntimeError("job failed")
    assert torch.get_num_threads() == before
    with devices.torch_threads(None):  # None: leave as they are, still restored
        torch.set_num_threads(1)
    assert torch.get_num_threads() == before


def test_use_threads_takes_n_else_every_core_on_the_cpu_only(monkeypatch):
    calls = []
    monkeypatch.setattr(devices, "use_all_cores", lambda: calls.append("all"))
    with devices.torch_threads():
        devices.use_threads(1, torch.device("cpu"))
        assert torch.get_num_threads() == 1 and calls == []
        devices.use_threads(None, torch.device("cpu"))
        devices.use_threads(0, None)
        assert calls == ["all", "all"]
        devices.use_threads(None, torch.device("cuda"))  # a GPU job leaves the CPU threads alone
        assert calls == ["all", "all"]
