"""Classification metrics on hand-computed cases."""

import numpy as np
import pytest

from napari_cellnet.core.metrics import (
    accuracy,
    auc,
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    per_class_metrics,
    roc_auc_ovr,
    roc_curve,
)

T = np.array([0, 0, 1, 1, 2, 2])
P = np.array([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_hand_case():
    cm = confusion_matrix(T, P)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # a class absent from both still gets a row and a column
    assert confusion_matrix(T, P, n_classes=4).shape == (4, 4)


def test_per_class_hand_case():
    m = per_class_metrics(confusion_matrix(T, P))
    np.testing.assert_allclose(m["precision"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(m["recall"], [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(m["specificity"], [3 / 4, 3 / 4, 1])
    np.testing.assert_allclose(m["npv"], [3 / 4, 1, 4 / 5])
    np.testing.assert_allclose(m["f1"], [1 / 2, 4 / 5, 2 / 3])
    assert m["support"].tolist() == [2, 2, 2]
    assert accuracy(T, P) == pytest.approx(4 / 6)
    assert balanced_accuracy(T, P) == pytest.approx(2 / 3)


def test_balanced_accuracy_imbalanced():
    t = np.array([0] * 8 + [1] * 2)
    p = np.zeros(10, int)
    assert accuracy(t, p) == pytest.approx(0.8)
    assert balanced_accuracy(t, p) == pytest.approx(0.5)
    m = per_class_metrics(confusion_matrix(t, p))
    assert m["precision"][1] == 0.0  # never predicted: 0/0 -> 0


def test_roc_auc_known_example():
    # scikit-learn's documented example: AUC 0.75
    fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert auc(fpr, tpr) == pytest.approx(0.75)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert np.isinf(thr[0])


def test_roc_ties_count_half():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9])
    fpr, tpr, _ = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert auc(fpr, tpr) == pytest.approx(0.875)  # Mann-Whitney with ties = 1/2
    # order of tied samples does not matter
    fpr2, tpr2, _ = roc_curve(y[[1, 0, 2, 3]], s[[1, 0, 2, 3]])
    np.testing.assert_allclose(fpr2, fpr)
    np.testing.assert_allclose(tpr2, tpr)


def test_roc_auc_ovr_and_report():
    t = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([
        [0.8, 0.1, 0.1],
        [0.4, 0.5, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.1, 0.7],
        [0.5, 0.1, 0.4],
    ])
    r = roc_auc_ovr(t, proba)
    # class 0: pos 0.8,0.4 vs neg 0.1,0.3,0.2,0.5 -> pairs won 4+3=7 of 8
    # class 1: pos 0.8,0.6 vs neg 0.1,0.5,0.1,0.1 -> 8 of 8
    # class 2: pos 0.7,0.4 vs neg 0.1 x4 -> 8 of 8
    np.testing.assert_allclose(r["auc"], [7 / 8, 1, 1])
    assert r["macro_auc"] == pytest.approx((7 / 8 + 2) / 3)
    rep = classification_report(t, proba.argmax(1), proba, ["a", "b", "c"])
    assert rep["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert rep["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert rep["per_class"]["a"]["auc"] == pytest.approx(7 / 8)
    assert rep["macro"]["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert rep["weighted"]["recall"] == pytest.approx(2 / 3)
    assert rep["n"] == 6 and rep["accuracy"] == pytest.approx(4 / 6)


def test_absent_class_auc_is_nan_not_error():
    t = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0]])
    r = roc_auc_ovr(t, proba)
    assert np.isnan(r["auc"][2])
    assert r["macro_auc"] == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="only one kind"):
        roc_curve(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match="labels but"):
        confusion_matrix(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), n_classes=2)
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="monotonic"):
        auc(np.array([0, 1, 0.5]), np.array([0, 1, 1]))
