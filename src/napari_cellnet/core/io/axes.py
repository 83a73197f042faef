"""Axes strings: check them, guess them, and reorder any stack to ``(T, C, Y, X)``.

Axes are plain strings over ``T C Z Y X`` (``"TYX"``, ``"TCYX"``, ``"YXC"`` for RGB). Every
reader, writer and pipeline goes through these three functions, so a wrong axes string
fails with the same message wherever it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

AXES_LETTERS = "TCZYX"


def validate_axes(axes: str, shape: Sequence[int], source: object = "the array") -> str:
    """Check an axes string against an array shape and return it upper-cased.

    Raises
    ------
    ValueError
        If the string has the wrong length, repeats a letter, uses a letter outside
        ``TCZYX`` or lacks ``Y`` and ``X``; the message names ``source`` and its shape.
    """
    ax = axes.strip().upper().replace("S", "C")
    shape = tuple(shape)
    hint = f"Give one letter per dimension from {AXES_LETTERS}, e.g. {guess_axes(shape)!r}."
    if len(ax) != len(shape):
        raise ValueError(
            f"Axes {axes!r} has {len(ax)} letters but {source} has {len(shape)} dimensions "
            f"(shape {shape}). {hint}"
        )
    bad = sorted(set(ax) - set(AXES_LETTERS))
    if bad:
        raise ValueError(f"Axes {axes!r} for {source} uses unknown letters {bad}. {hint}")
    if len(set(ax)) != len(ax):
        raise ValueError(f"Axes {axes!r} for {source} repeats a letter. {hint}")
    if "Y" not in ax or "X" not in ax:
        raise ValueError(f"Axes {axes!r} for {source} must contain Y and X. {hint}")
    return ax


def guess_axes(shape: Sequence[int]) -> str:
    """Guess the axes of an array from its shape alone.

    2-D is ``YX``; a small last dimension (3 or 4) is read as colour (``YXC``, ``TYXC``);
    a small second dimension of a 4-D array as channels (``TCYX``); otherwise the leading
    dimension is time (``TYX``, ``TZYX`` is never guessed: say ``axes=`` for volumes).
    """
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    if nd < 2:
        raise ValueError(f"An image needs at least 2 dimensions; got shape {shape}.")
    if nd == 2:
        return "YX"
    rgb = shape[-1] in (3, 4) and shape[-2] > 4
    if nd == 3:
        return "YXC" if rgb else "TYX"
    if nd == 4:
        if rgb:
            return "TYXC"
        return "TCYX"
    if nd == 5:
        return "TCZYX"
    raise ValueError(f"Cannot guess axes for a {nd}-D array of shape {shape}; pass axes=.")


def to_tcyx(data: Any, axes: str) -> Any:
    """Reorder an array to ``(T, C, Y, X)``, adding length-1 T and C axes where missing.

    Works on numpy arrays, memmaps and dask arrays without reading them.

    Raises
    ------
    ValueError
        If ``axes`` does not fit ``data`` or contains ``Z`` with more than one plane
        (volumes are not time-lapse frames: pick a plane or relabel the axis).
    """
    ax = validate_axes(axes, data.shape)
    if "Z" in ax:
        nz = data.shape[ax.index("Z")]
        if nz != 1:
            raise ValueError(
                f"The stack has a Z axis with {nz} planes (axes {ax!r}); napari-cellnet segments 2-D "
                "time-lapse frames. Choose one plane, or pass axes with T instead of Z if the planes are time points."
            )
        index: list[int | slice] = [slice(None)] * len(ax)
        index[ax.index("Z")] = 0
        data = data[tuple(index)]
        ax = ax.replace("Z", "")
    for letter in "TC":
        if letter not in ax:
            data = data[None]
            ax = letter + ax
    perm = [ax.index(letter) for letter in "TCYX"]
    return data.transpose(perm)
