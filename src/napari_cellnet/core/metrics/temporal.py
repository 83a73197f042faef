"""Temporal consistency of a label movie: how much it flickers, with no ground truth needed.

The temporal U-Net exists to make labels steadier from frame to frame; this measures it.
"""

from __future__ import annotations

import numpy as np


def temporal_consistency(labels: np.ndarray) -> dict:
    """How much a label movie flickers from one frame to the next (no ground truth needed).

    Compare a prediction's values with the ground truth's: cells entering, leaving and
    dividing make some change natural, flicker makes much more.

    Parameters
    ----------
    labels : ndarray of int, shape (T, Y, X)
        Labels whose IDs are meant to persist through time.

    Returns
    -------
    dict
        ``mask_change``: mean over consecutive pairs of ``1 - IoU`` of the two foreground
        masks (0 = the same pixels are cells in both frames; two empty frames count 0);
        ``id_churn``: mean over pairs of ``1 - |ids_t & ids_t+1| / |ids_t | ids_t+1|``
        (share of IDs that appear or vanish); ``blinks``: number of (ID, frame) where an ID
        present in the frames before and after is missing; ``pairs``: T - 1;
        ``per_pair``: one dict per pair ``t -> t+1`` with ``t``, ``mask_change``,
        ``id_churn``, ``appeared``, ``disappeared``; ``blinks_per_frame``: list of T ints.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"Expected (T, Y, X) labels, got shape {lab.shape}.")
    T = lab.shape[0]
    ids = [set(np.unique(lab[t]).tolist()) - {0} for t in range(T)]
    per_pair = []
    for t in range(T - 1):
        a, b = lab[t] > 0, lab[t + 1] > 0
        union = int(np.count_nonzero(a | b))
        change = 1.0 - int(np.count_nonzero(a & b)) / union if union else 0.0
        both = ids[t] | ids[t + 1]
        churn = 1.0 - len(ids[t] & ids[t + 1]) / len(both) if both else 0.0
        per_pair.append({"t": t, "mask_change": float(change), "id_churn": float(churn),
                         "appeared": len(ids[t + 1] - ids[t]), "disappeared": len(ids[t] - ids[t + 1])})
    blinks = [0] + [len((ids[t - 1] & ids[t + 1]) - ids[t]) for t in range(1, T - 1)] + ([0] if T > 1 else [])
    blinks = blinks[:T]
    return {
        "mask_change": float(np.mean([p["mask_change"] for p in per_pair])) if per_pair else 0.0,
        "id_churn": float(np.mean([p["id_churn"] for p in per_pair])) if per_pair else 0.0,
        "blinks": int(sum(blinks)),
        "pairs": len(per_pair),
        "per_pair": per_pair,
        "blinks_per_frame": blinks,
    }
