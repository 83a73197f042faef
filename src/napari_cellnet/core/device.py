"""The one place that chooses where torch runs: CUDA, then Apple MPS, then the CPU.

Everything else asks :func:`resolve` instead of testing ``torch.cuda.is_available()``
itself, so that "auto" means the same thing in the CLI, the widgets and the tests, and
a wrong device name fails with one clear message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported late: the reader and widgets must not pay for it
    import torch


#: What every job's ``device`` parameter accepts (its help text in widgets and ``--help``).
DEVICE_HELP = "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class DeviceInfo:
    """What a widget shows next to its device picker."""

    name: str  # "cuda:0", "mps", "cpu"
    description: str  # "NVIDIA H100 (CUDA 12.8, torch 2.13.0)" or "CPU only: torch has no CUDA"
    cuda_build: str | None  # torch.version.cuda, None for a CPU build


def available() -> list[str]:
    """Device names this machine can use, best first (always ends with ``"cpu"``)."""
    import torch

    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve(name: str | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into a torch device.

    Raises
    ------
    ValueError
        If the name is unknown or the device is not present, naming the ones that are.
    """
    import torch

    name = (name or "auto").strip().lower()
    choices = available()
    if name == "auto":
        return torch.device(choices[0])
    if name == "cuda":
        name = "cuda:0"
    if name.startswith("cuda:") and not torch.cuda.is_available():
        build = torch.version.cuda
        why = "torch was built without CUDA" if build is None else "no CUDA GPU is visible"
        raise ValueError(
            f"Device {name!r} is not available ({why}). Use one of {choices}, or 'auto'. "
            "To use an NVIDIA GPU install a CUDA build of torch (see the README)."
        )
    if name not in choices and not (name.startswith("cuda:") and name in choices):
        raise ValueError(f"Unknown or unavailable device {name!r}. Use one of {choices}, or 'auto'.")
    return torch.device(name)


def describe(device: torch.device | str = "auto") -> DeviceInfo:
    """A one-line description of a device for people: GPU name, CUDA build, CPU threads."""
    import torch

    dev = resolve(device) if isinstance(device, str) else device
    build = torch.version.cuda
    if dev.type == "cuda":
        text = f"{torch.cuda.get_device_name(dev)} (CUDA {build}, torch {torch.__version__})"
    elif dev.type == "mps":
        text = f"Apple GPU (MPS, torch {torch.__version__})"
    else:
        cuda = "torch has no CUDA" if build is None else "no CUDA GPU visible"
        text = f"CPU only: {cuda} ({torch.get_num_threads()} threads, torch {torch.__version__})"
    return DeviceInfo(name=str(dev), description=text, cuda_build=build)


def use_all_cores() -> None:
    """Let torch use every core the process may run on (the default can be lower in threads)."""
    import torch

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        n = os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def use_threads(n: int | None, device: torch.device | None = None) -> None:
    """torch's CPU threads for a job: ``n`` when given (and > 0), else every core when the
    job runs on the CPU (``device`` None: whatever the device)."""
    import torch

    if n:
        torch.set_num_threads(int(n))
    elif device is None or device.type == "cpu":
        use_all_cores()


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """torch's CPU threads set to ``n`` for the block (None: as they are), then restored: a
    job's thread setting must not outlive it in napari's process."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def empty_cache(device: torch.device) -> None:
    """Give cached GPU memory back after an out-of-memory retry or at the end of a job."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
