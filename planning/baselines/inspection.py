"""Plain-threshold inspection: the classical floor for the defect CNN.

A few hand-made image statistics (edge energy, its extreme, colour spread) are compared with their
distribution over good parts; a part whose largest z-score passes the threshold is rejected. The
threshold is set on rendered good parts for a target false-alarm rate, as a line engineer would set a
vision sensor's limit on a golden sample set.
"""

from __future__ import annotations

import functools

import numpy as np

from environments.parts import NOMINAL, RenderShift, render_batch, sample_spec
from environments.plant import reject_flags, station_threshold


def image_features(images: np.ndarray) -> np.ndarray:
    """Hand-made statistics of uint8 images.

    Parameters
    ----------
    images : np.ndarray, shape = (n, h, w, 3), uint8

    Returns
    -------
    np.ndarray, shape = (n, 4): mean |Laplacian|, 99.5th percentile |Laplacian|, colour spread, dark share
    """
    x = images.astype(np.float32) / 255.0
    gray = x.mean(axis=-1)
    lap = np.abs(4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1]
                 - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]).reshape(len(x), -1)
    chroma = (x - gray[..., None]).reshape(len(x), -1, 3)
    return np.stack([
        lap.mean(axis=1),
        np.percentile(lap, 99.5, axis=1),
        np.linalg.norm(chroma, axis=-1).std(axis=1),
        (gray < 0.15).reshape(len(x), -1).mean(axis=1),
    ], axis=1)


class ThresholdInspector:
    """Reject a part when its largest feature z-score against good parts passes a calibrated threshold.

    Parameters
    ----------
    good_mean, good_std : np.ndarray, shape = (4,)
        Feature statistics of good parts.
    score_threshold : float
        The z-score at which p(defect) is 0.5.
    max_parts : int
        Images per observation (the plant's inspection slots).
    reject_threshold : float
        Reject when p(defect) is at least this.
    """

    def __init__(self, good_mean: np.ndarray, good_std: np.ndarray, score_threshold: float, max_parts: int,
                 reject_threshold: float = 0.5):
        self.good_mean, self.good_std = good_mean, np.maximum(good_std, 1e-6)
        self.score_threshold, self.max_parts, self.reject_threshold = score_threshold, max_parts, reject_threshold

    @classmethod
    def calibrated(cls, part_types: list[str], image_size: int, max_parts: int, reject_threshold: float = 0.5,
                   false_alarm_target: float = 0.02, n_good: int = 400, shift: RenderShift = NOMINAL,
                   seed: int = 12345) -> ThresholdInspector:
        """Set on its own golden sample: ``n_good`` good parts rendered under ``shift`` (nominal light)."""
        mean, std, thr = _calibrate(tuple(part_types), image_size, false_alarm_target, n_good, shift, seed)
        return cls(mean, std, thr, max_parts, reject_threshold)

    def calibrate(self, good_images: np.ndarray, false_alarm_target: float = 0.01) -> float:
        """Commission at a station: refit the good-part statistics and the z-score limit on known-good parts
        seen under its camera (`_fit`, the rule every inspector's threshold follows). p(defect) is 0.5 at
        the limit, so the reject threshold is 0.5; returns it."""
        self.good_mean, self.good_std, self.score_threshold = _fit(image_features(good_images), false_alarm_target)
        self.reject_threshold = 0.5
        return self.reject_threshold

    def reset(self, seed: int | None = None) -> None:
        pass

    def p_defect(self, images: np.ndarray) -> np.ndarray:
        """p(defect) per image: a logistic of the largest z-score around the calibrated threshold."""
        if len(images) == 0:
            return np.zeros(0)
        z = _largest_z(image_features(images), self.good_mean, self.good_std)
        return 1.0 / (1.0 + np.exp(-2.0 * (z - self.score_threshold)))

    def act(self, observation: dict) -> np.ndarray:
        """Plant inspection action: 1 = reject, for each of the ``n_parts`` images shown."""
        return reject_flags(observation, self.p_defect, self.max_parts, self.reject_threshold)


@functools.lru_cache(maxsize=8)
def _calibrate(part_types: tuple[str, ...], size: int, false_alarm_target: float, n_good: int,
               shift: RenderShift, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    specs = [sample_spec(rng, defect="good", part_type=part_types[rng.integers(len(part_types))])
             for _ in range(n_good)]
    images, _, _ = render_batch(specs, [seed + k for k in range(n_good)], size, shift)
    return _fit(image_features(images), false_alarm_target)


def _largest_z(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.abs((features - mean) / std).max(axis=1)


def _fit(good_features: np.ndarray, false_alarm_target: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Good parts' feature mean and spread, and the lowest z-score limit that at most ``false_alarm_target``
    of them reach: `station_threshold`, the rule (and the errors) of every inspector's threshold."""
    mean, std = good_features.mean(axis=0), np.maximum(good_features.std(axis=0), 1e-6)
    return mean, std, station_threshold(_largest_z(good_features, mean, std), false_alarm_target)
