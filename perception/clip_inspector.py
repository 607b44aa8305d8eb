"""CLIP as the inspection station's classifier: zero-shot defect typing, no trained head.

The same interface as the defect CNN's inspector (``class_probs``, ``p_defect``, ``act``), so a scenario
can name ``agents.inspection.policy: clip`` and compare it with the CNN and the threshold baseline.
"""

from __future__ import annotations

import numpy as np

from environments.plant import reject_flags, station_threshold
from perception.clip_model import PartsCLIP


class CLIPInspector:
    """Reject a part when CLIP's zero-shot p(defect) = 1 - p(good) reaches ``reject_threshold``."""

    def __init__(self, clip: PartsCLIP, max_parts: int = 1, reject_threshold: float | None = None):
        self.clip, self.max_parts = clip, max_parts
        self.reject_threshold = 0.5 if reject_threshold is None else float(reject_threshold)

    def reset(self, seed: int | None = None) -> None:
        pass

    def class_probs(self, images: np.ndarray) -> np.ndarray:
        return self.clip.zero_shot_probs(images)

    def p_defect(self, images: np.ndarray) -> np.ndarray:
        return 1.0 - self.class_probs(images)[:, 0] if len(images) else np.zeros(0)

    def calibrate(self, good_images: np.ndarray, false_alarm_target: float = 0.01) -> float:
        """Set the reject threshold from known-good parts seen at this station (``metrics.station_threshold``)
        and return it."""
        self.reject_threshold = station_threshold(self.p_defect(good_images), false_alarm_target)
        return self.reject_threshold

    def act(self, observation: dict) -> np.ndarray:
        return reject_flags(observation, self.p_defect, self.max_parts, self.reject_threshold)
