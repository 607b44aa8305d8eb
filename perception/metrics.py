"""Inspection metrics: what a quality engineer asks of a defect classifier.

All take the true defect codes (0 = good) and the classifier's class probabilities; p(defect) is
``1 - p(good)`` and a part is rejected when p(defect) reaches the reject threshold.
"""

from __future__ import annotations

import numpy as np

from environments.parts import DEFECT_TYPES
from environments.plant import threshold_for_false_alarm

__all__ = ["inspection_metrics", "p_defect", "threshold_for_false_alarm"]


def _auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # sklearn (with scipy and pandas) takes ~1.3 s to import; the plant's actors import this module and
    # never need it
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y_true, y_score)


def p_defect(probs: np.ndarray) -> np.ndarray:
    """p(defect) per part from class probabilities (n, n_classes), class 0 = good."""
    return 1.0 - probs[:, 0]


def inspection_metrics(labels: np.ndarray, probs: np.ndarray, reject_threshold: float,
                       false_alarm_target: float = 0.02) -> dict:
    """Accuracy, escape and false-alarm rates and AUROC, overall and per class.

    Parameters
    ----------
    labels : np.ndarray, shape = (n,), true defect codes.
    probs : np.ndarray, shape = (n, len(DEFECT_TYPES)), class probabilities.
    reject_threshold : reject when p(defect) >= this (set on validation data, never on these parts).
    false_alarm_target : also report the escape rate at the threshold that gives this false-alarm
        rate *on these parts* (an oracle operating point, for reading the ROC curve).

    Returns
    -------
    dict with "n", "accuracy", "defect_escape_rate", "false_alarm_rate", "auroc", "reject_threshold",
    "escape_at_false_alarm" {"false_alarm_target", "threshold", "defect_escape_rate"},
    and "per_class" {name: {"n", "accuracy", "defect_escape_rate" | "false_alarm_rate", "auroc"}}.
    """
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    pd = p_defect(probs)
    reject = pd >= reject_threshold
    good, bad = labels == 0, labels > 0
    out: dict = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "defect_escape_rate": float((~reject[bad]).mean()) if bad.any() else float("nan"),
        "false_alarm_rate": float(reject[good].mean()) if good.any() else float("nan"),
        "auroc": float(_auroc(bad, pd)) if good.any() and bad.any() else float("nan"),
        "reject_threshold": float(reject_threshold),
    }
    oracle = threshold_for_false_alarm(pd[good], false_alarm_target)
    out["escape_at_false_alarm"] = {
        "false_alarm_target": false_alarm_target,
        "threshold": oracle,
        "defect_escape_rate": float((pd[bad] < oracle).mean()) if bad.any() else float("nan"),
    }
    per_class = {}
    for code, name in enumerate(DEFECT_TYPES):
        sel = labels == code
        row: dict = {"n": int(sel.sum()), "accuracy": float((pred[sel] == code).mean()) if sel.any() else float("nan")}
        if code == 0:
            row["false_alarm_rate"] = out["false_alarm_rate"]
        else:
            row["defect_escape_rate"] = float((~reject[sel]).mean()) if sel.any() else float("nan")
            row["auroc"] = (float(_auroc(np.r_[np.zeros(good.sum()), np.ones(sel.sum())],
                                                np.r_[pd[good], pd[sel]]))
                            if sel.any() and good.any() else float("nan"))
        per_class[name] = row
    out["per_class"] = per_class
    out["confusion"] = confusion_matrix(labels, pred).tolist()
    return out


def confusion_matrix(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts (true class, predicted class), shape (n_classes, n_classes)."""
    k = len(DEFECT_TYPES)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
