"""IDs through time: carry each cell's ID from frame to frame, mark divisions, and turn
time-consistent labels into napari Tracks and per-object feature tables.

numpy / scipy only. IDs are carried by the Hungarian assignment (scipy
``linear_sum_assignment``) on the IoU of each frame's objects with the previous frame's,
one frame at a time, so a movie of any length streams through :class:`TimeMatcher`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_cellnet.segmentation.postprocessing import relabel


def _iou_matrix(prev: np.ndarray, cur: np.ndarray, n_prev: int, n_cur: int) -> np.ndarray:
    """IoU between objects 1..n_prev of ``prev`` and 1..n_cur of ``cur`` (sequential labels)."""
    both = (prev > 0) | (cur > 0)
    pairs = np.bincount(prev[both].astype(np.int64) * (n_cur + 1) + cur[both],
                        minlength=(n_prev + 1) * (n_cur + 1)).reshape(n_prev + 1, n_cur + 1)
    inter = pairs[1:, 1:].astype(np.float64)
    size_prev = pairs[1:, :].sum(axis=1)
    size_cur = pairs[:, 1:].sum(axis=0)
    union = size_prev[:, None] + size_cur[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class TimeMatcher:
    """Carries object IDs from frame to frame, one frame at a time (streams long movies).

    Each frame's objects are matched one-to-one to the previous frame's by the
    Hungarian assignment on IoU; pairs with IoU >= ``min_iou`` keep the previous ID,
    every other object gets a new ID never used before in the movie. An object that
    vanishes for a frame comes back with a new ID (no gap closing).

    Parameters
    ----------
    min_iou : float
        Smallest IoU that counts as the same cell in consecutive frames.

    Attributes
    ----------
    divisions : dict[int, list[int]]
        ``{new_id: [parent_id]}`` for objects that appeared while mostly covering (more
        than half of them) a previous object that continued as another ID: a napari
        Tracks ``graph``.
    """

    def __init__(self, min_iou: float = 0.3) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}.")
        self.min_iou = float(min_iou)
        self.next_id = 1
        self._prev: np.ndarray | None = None
        self._prev_ids: np.ndarray = np.zeros(1, np.int64)  # sequential label -> global ID
        self.divisions: dict[int, list[int]] = {}

    def update(self, labels: np.ndarray) -> np.ndarray:
        """Relabel one frame's objects with movie-wide IDs.

        Parameters
        ----------
        labels : ndarray of int, shape (Y, X)

        Returns
        -------
        ndarray, int32, shape (Y, X)
        """
        from scipy.optimize import linear_sum_assignment

        cur = relabel(np.asarray(labels))
        n_cur = int(cur.max(initial=0))
        ids = np.zeros(n_cur + 1, np.int64)
        matched_cur = np.zeros(n_cur + 1, bool)
        if self._prev is not None and n_cur and self._prev.shape != cur.shape:
            raise ValueError(f"Frame shape changed from {self._prev.shape} to {cur.shape}.")
        n_prev = int(self._prev.max(initial=0)) if self._prev is not None else 0
        if n_prev and n_cur:
            iou = _iou_matrix(self._prev, cur, n_prev, n_cur)  # type: ignore[arg-type]
            rows, cols = linear_sum_assignment(-iou)
            ok = iou[rows, cols] >= self.min_iou
            ids[cols[ok] + 1] = self._prev_ids[rows[ok] + 1]
            matched_cur[cols[ok] + 1] = True
            continued = set(rows[ok].tolist())
            # a new object sitting mostly on a previous object that continued: a division
            inter = np.bincount(self._prev[cur > 0].astype(np.int64) * (n_cur + 1) + cur[cur > 0],  # type: ignore[index]
                                minlength=(n_prev + 1) * (n_cur + 1)).reshape(n_prev + 1, n_cur + 1)
            size_cur = np.bincount(cur.ravel(), minlength=n_cur + 1)
            parents = {}
            for j in range(1, n_cur + 1):
                if matched_cur[j]:
                    continue
                i = int(inter[1:, j].argmax()) if n_prev else -1
                if i >= 0 and (i in continued) and inter[i + 1, j] > 0.5 * size_cur[j]:
                    parents[j] = int(self._prev_ids[i + 1])
        else:
            parents = {}
        for j in range(1, n_cur + 1):
            if not matched_cur[j]:
                ids[j] = self.next_id
                self.next_id += 1
                if j in parents:
                    self.divisions[int(ids[j])] = [parents[j]]
        self._prev = cur
        self._prev_ids = ids
        return ids[cur].astype(np.int32)

    def resume(self, labels: np.ndarray, next_id: int | None = None) -> None:
        """Continue after a frame that already carries movie-wide IDs (resuming a stopped run).

        Parameters
        ----------
        labels : ndarray of int, shape (Y, X)
            The last finished frame, with the IDs the earlier run gave it.
        next_id : int, optional
            First ID not used anywhere in the earlier run; at least ``labels.max() + 1``.
        """
        lab = np.asarray(labels)
        self._prev = relabel(lab)
        present = np.unique(lab[lab > 0]).astype(np.int64)  # sorted, as _relabel numbers them
        self._prev_ids = np.concatenate([[0], present])
        self.next_id = max(int(next_id or 1), int(present.max(initial=0)) + 1)


def match_labels_through_time(labels: np.ndarray, min_iou: float = 0.3) -> np.ndarray:
    """Give each cell the same ID in every frame it is followed through.

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X)
        Per-frame instance labels (IDs need not agree between frames).
    min_iou : float
        See :class:`TimeMatcher`.

    Returns
    -------
    ndarray, int32, shape (T, Y, X)
        IDs unique over the whole movie; a matched object keeps its previous ID.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"Expected (T, Y, X) labels, got shape {arr.shape}.")
    matcher = TimeMatcher(min_iou)
    return np.stack([matcher.update(arr[t]) for t in range(arr.shape[0])]) if len(arr) else arr.astype(np.int32)


def frame_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IDs, areas and centroids of the objects of one ``(Y, X)`` frame (bincount, no loop)."""
    lab = np.asarray(labels).astype(np.int64, copy=False)
    fg = lab > 0
    if not fg.any():
        e = np.zeros(0)
        return e.astype(np.int64), e.astype(np.int64), e, e
    yy, xx = np.nonzero(fg)
    ids = lab[fg]
    n = int(ids.max()) + 1
    area = np.bincount(ids, minlength=n)
    cy = np.bincount(ids, weights=yy, minlength=n)
    cx = np.bincount(ids, weights=xx, minlength=n)
    present = np.nonzero(area)[0]
    present = present[present > 0]
    return present, area[present], cy[present] / area[present], cx[present] / area[present]


def label_features(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-object table of a ``(T, Y, X)`` label stack: ``frame``, ``label``, ``area``,
    ``centroid_y``, ``centroid_x`` (columns for napari ``layer.features`` and CSV)."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("frame", "label", "area", "centroid_y", "centroid_x")}
    for t in range(arr.shape[0]):
        ids, area, cy, cx = frame_centroids(arr[t])
        cols["frame"].append(np.full(len(ids), t, np.int64))
        cols["label"].append(ids)
        cols["area"].append(area)
        cols["centroid_y"].append(cy)
        cols["centroid_x"].append(cx)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def tracks_from_features(features: dict[str, Any]) -> np.ndarray:
    """napari Tracks data ``(N, 4)`` = ``[track_id, t, y, x]``, sorted by track then time."""
    f = {k: np.asarray(v) for k, v in features.items()}
    data = np.column_stack([f["label"], f["frame"], f["centroid_y"], f["centroid_x"]]).astype(np.float64)
    if len(data) == 0:
        return np.zeros((0, 4))
    order = np.lexsort((data[:, 1], data[:, 0]))
    return data[order]


def labels_to_tracks(labels: np.ndarray) -> np.ndarray:
    """Tracks implied by time-consistent labels, in napari's Tracks format.

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X)
        Labels whose IDs persist through time (:func:`match_labels_through_time`).

    Returns
    -------
    ndarray, float64, shape (N, 4)
        One row per object per frame: ``[track_id, t, y, x]`` (centroid), sorted by
        track ID then time, as ``viewer.add_tracks`` expects.
    """
    return tracks_from_features(label_features(labels))
