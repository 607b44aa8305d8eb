"""Inspection metrics: what a quality engineer asks of a defect classifier.

All take the true defect codes (0 = good) and the classifier's class probabilities; p(defect) is
``1 - p(good)`` and a part is rejected when p(defect) reaches the reject threshold.
"""

from __future__ import annotations

import numpy as np

from environments.errors import ShopfloorInputError
from environments.parts import DEFECT_TYPES


def _auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    # sklearn (with scipy and pandas) takes ~1.3 s to import; the plant's actors import this module and
    # never need it
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y_true, y_score)


def p_defect(probs: np.ndarray) -> np.ndarray:
    """p(defect) per part from class probabilities (n, n_classes), class 0 = good."""
    return 1.0 - probs[:, 0]


def threshold_for_false_alarm(p_good_parts: np.ndarray, false_alarm_target: float) -> float:
    """The lowest reject threshold whose false-alarm rate on these good parts is at most the target."""
    if len(p_good_parts) == 0:
        return 0.5
    s = np.sort(p_good_parts)[::-1]
    k = int(np.floor(false_alarm_target * len(s)))  # at most k good parts may be rejected
    # reject iff p >= threshold: put the threshold just above the (k+1)-th highest good score
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else 0.0


def station_threshold(p_good_parts: np.ndarray, false_alarm_target: float) -> float:
    """A station's reject threshold from the p(defect) of known-good parts seen there, as a station is
    commissioned: the lowest threshold that rejects at most ``false_alarm_target`` of them. A threshold
    stored at training was set under the training light; a station's own light moves good parts'
    p(defect) (under the benchmark's dim, noisy light, a threshold for 1% on validation rejected 2.6%)."""
    if not 0.0 < false_alarm_target < 1.0:
        raise ShopfloorInputError(f"false_alarm_target={false_alarm_target} is invalid; allowed: 0 < target < 1.")
    if len(p_good_parts) < 1 / false_alarm_target:
        raise ShopfloorInputError(f"{len(p_good_parts)} good parts cannot set a {false_alarm_target:.1%} false-alarm "
                                  f"rate; allowed: at least {int(np.ceil(1 / false_alarm_target))}.")
    return threshold_for_false_alarm(np.asarray(p_good_parts), false_alarm_target)


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
