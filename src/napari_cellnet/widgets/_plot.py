"""Small matplotlib canvases for dock widgets: the live training curves (one run, or every fold of
a cross-validation) and a confusion matrix.

A live loss curve is custom drawing, so it is the one place a plain ``QWidget`` (a
``FigureCanvasQTAgg``) is the right tool. Figures are made with ``matplotlib.figure.Figure``,
never ``pyplot``, so no global figure state leaks between widgets or into tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy

# napari's dark theme, so the plot does not glare in the dock
_BG, _FG, _GRID = "#262930", "#d6d6d6", "#414851"


def _style(ax: Any) -> None:
    ax.set_facecolor(_BG)
    ax.tick_params(colors=_FG, labelsize=7)
    for side in ax.spines.values():
        side.set_color(_GRID)
    ax.xaxis.label.set_color(_FG)
    ax.yaxis.label.set_color(_FG)
    ax.title.set_color(_FG)
    ax.grid(True, color=_GRID, linewidth=0.5)


class _Canvas(FigureCanvasQTAgg):
    def __init__(self, height: float = 2.6) -> None:
        fig = Figure(figsize=(4, height), dpi=100, facecolor=_BG, layout="constrained")
        super().__init__(fig)
        self.setMinimumHeight(int(height * 70))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)


class LivePlot(_Canvas):
    """Training curves per epoch: losses on the left axis, validation metrics on the right.

    Attributes
    ----------
    series : dict of str to (list of float, list of float)
        ``name -> (epochs, values)`` of every curve drawn so far (what tests read).
    """

    LOSSES = ("train_loss", "val_loss")

    def __init__(self, metrics: Sequence[str] = ("seg", "f1"), title: str = "") -> None:
        super().__init__()
        self.metrics = tuple(metrics)
        self.title = title
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.best_epoch: int | None = None
        self.clear()

    def clear(self) -> None:
        """Forget every point (a new run)."""
        self.series = {k: ([], []) for k in (*self.LOSSES, *self.metrics)}
        self.best_epoch = None
        self._draw()

    def add_epoch(self, epoch: int, train_loss: float, val_metrics: dict[str, float] | None = None,
                  best_epoch: int | None = None) -> None:
        """Append one epoch's values and redraw."""
        values = {"train_loss": train_loss, **(val_metrics or {})}
        for key, (xs, ys) in self.series.items():
            v = values.get(key)
            if v is not None and np.isfinite(v):
                if xs and xs[-1] == epoch:  # the same epoch again (continued run): replace
                    xs.pop()
                    ys.pop()
                xs.append(float(epoch))
                ys.append(float(v))
        if best_epoch is not None:
            self.best_epoch = best_epoch
        self._draw()

    def set_history(self, rows: Sequence[dict[str, Any]]) -> None:
        """Redraw from a whole history (one dict per epoch with ``epoch`` and metric keys)."""
        self.clear()
        for row in rows:
            self.add_epoch(int(row["epoch"]), float(row.get("train_loss", np.nan)),
                           {k: float(v) for k, v in row.items() if isinstance(v, (int, float))})

    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(111)
        _style(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        colors = {"train_loss": "#4ea8de", "val_loss": "#f4a261", "seg": "#90be6d", "f1": "#e9c46a",
                  "accuracy": "#90be6d", "balanced_accuracy": "#e9c46a", "ap": "#c77dff"}
        handles = []
        for key in self.LOSSES:
            xs, ys = self.series.get(key, ([], []))
            if xs:
                (h,) = ax.plot(xs, ys, "-o", ms=2.5, lw=1.2, color=colors.get(key), label=key.replace("_", " "))
                handles.append(h)
        if any(self.series.get(k, ([], []))[0] for k in self.metrics):
            ax2 = ax.twinx()
            _style(ax2)
            ax2.grid(False)
            ax2.set_ylim(0, 1)
            ax2.set_ylabel("validation score")
            for key in self.metrics:
                xs, ys = self.series[key]
                if xs:
                    (h,) = ax2.plot(xs, ys, "--s", ms=2.5, lw=1.2, color=colors.get(key), label=key.upper())
                    handles.append(h)
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch, color="#adb5bd", lw=0.8, ls=":")
        if handles:
            leg = ax.legend(handles=handles, fontsize=7, loc="upper right", facecolor=_BG, edgecolor=_GRID)
            for text in leg.get_texts():
                text.set_color(_FG)
        else:
            ax.text(0.5, 0.5, "curves appear after the first epoch", ha="center", va="center",
                    color=_FG, fontsize=8, transform=ax.transAxes)
        if self.title:
            ax.set_title(self.title, fontsize=8)
        self.draw_idle()


class ConfusionPlot(_Canvas):
    """A confusion matrix (rows: truth, columns: prediction) with counts in the cells."""

    def __init__(self) -> None:
        super().__init__(height=3.0)
        self.matrix: np.ndarray | None = None
        self.class_names: list[str] = []
        self.show_matrix(None, [])

    def show_matrix(self, matrix: np.ndarray | Sequence[Sequence[int]] | None, class_names: Sequence[str]) -> None:
        """Draw ``matrix`` (K, K); None clears the plot."""
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(111)
        _style(ax)
        ax.grid(False)
        if matrix is None:
            self.matrix, self.class_names = None, []
            ax.text(0.5, 0.5, "no class comparison yet", ha="center", va="center", color=_FG, fontsize=8,
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            self.draw_idle()
            return
        cm = np.asarray(matrix, dtype=np.int64)
        self.matrix, self.class_names = cm, list(class_names)
        ax.imshow(cm, cmap="viridis")
        k = cm.shape[0]
        ax.set_xticks(range(k), [str(c) for c in class_names], rotation=30, ha="right")
        ax.set_yticks(range(k), [str(c) for c in class_names])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        top = cm.max() if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="black" if cm[i, j] > 0.6 * top else "white")
        self.draw_idle()


class RunsPlot(_Canvas):
    """The curves of every run of a cross-validated training, kept side by side.

    Top: the training loss of each run (``fold1`` … ``foldk``, ``refit``) per epoch. Bottom:
    the validation accuracy (solid) and balanced accuracy (dashed) of each run that has a
    validation split. One colour per fold; the refit, trained for the model to use, is drawn
    in white and named "refit". Runs are kept until :meth:`clear` (a new training).

    Attributes
    ----------
    runs : dict of str to dict of str to (list of float, list of float)
        ``run -> metric -> (epochs, values)`` for ``train_loss``, ``accuracy``,
        ``balanced_accuracy`` and ``val_loss`` (what tests read).
    """

    METRICS = ("accuracy", "balanced_accuracy")
    _COLORS = ("#4ea8de", "#f4a261", "#90be6d", "#e9c46a", "#c77dff", "#ef476f", "#06d6a0", "#8d99ae")
    _REFIT = "#f8f9fa"

    def __init__(self) -> None:
        super().__init__(height=3.6)
        self.runs: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        self.title = ""
        self.clear()

    def clear(self) -> None:
        """Forget every run (a new training)."""
        self.runs = {}
        self._draw()

    def add_epoch(self, run: str, epoch: int, train_loss: float, val_metrics: dict[str, float] | None = None) -> None:
        """Append one epoch of ``run`` and redraw (the same epoch again replaces it)."""
        series = self.runs.setdefault(run, {})
        for key, value in {"train_loss": train_loss, **(val_metrics or {})}.items():
            if key not in ("train_loss", "val_loss", *self.METRICS) or value is None or not np.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            if xs and xs[-1] == epoch:
                xs.pop()
                ys.pop()
            xs.append(float(epoch))
            ys.append(float(value))
        self._draw()

    def color(self, run: str) -> str:
        """The colour of a run: white for the refit, one per fold number otherwise."""
        if run.startswith("refit"):
            return self._REFIT
        digits = "".join(c for c in run.split()[0] if c.isdigit())
        return self._COLORS[(int(digits) - 1) % len(self._COLORS)] if digits else self._COLORS[0]

    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        loss_ax, acc_ax = fig.subplots(2, 1, sharex=True)
        for ax in (loss_ax, acc_ax):
            _style(ax)
        loss_ax.set_ylabel("training loss")
        acc_ax.set_ylabel("validation")
        acc_ax.set_xlabel("epoch")
        acc_ax.set_ylim(0, 1.02)
        for run, series in self.runs.items():
            color, refit = self.color(run), run.startswith("refit")
            xs, ys = series.get("train_loss", ([], []))
            if xs:
                loss_ax.plot(xs, ys, "--" if refit else "-", lw=1.6 if refit else 1.1, color=color, label=run)
            for key, style in zip(self.METRICS, ("-o", "--"), strict=True):
                xs, ys = series.get(key, ([], []))
                if xs:
                    acc_ax.plot(xs, ys, style, ms=2.5, lw=1.1, color=color)
        if self.runs:
            leg = loss_ax.legend(fontsize=6, loc="upper right", facecolor=_BG, edgecolor=_GRID,
                                 ncol=2 if len(self.runs) > 3 else 1)
            for text in leg.get_texts():
                text.set_color(_FG)
        else:
            loss_ax.text(0.5, 0.5, "curves appear after the first epoch", ha="center", va="center",
                         color=_FG, fontsize=8, transform=loss_ax.transAxes)
        if any(key in series for series in self.runs.values() for key in self.METRICS):
            acc_ax.text(0.01, 0.04, "accuracy (solid), balanced accuracy (dashed)", color=_FG, fontsize=6,
                        transform=acc_ax.transAxes)
        elif self.runs:
            acc_ax.text(0.5, 0.5, "no validation split (validation fraction 0)", ha="center", va="center",
                        color=_FG, fontsize=7, transform=acc_ax.transAxes)
        if self.title:
            loss_ax.set_title(self.title, fontsize=8)
        self.draw_idle()
