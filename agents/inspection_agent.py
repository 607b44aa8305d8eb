"""InspectionAgent: looks at each part at the inspection station, posts verdicts and raises defect alarms.

It reads ``perception/parts`` (the images of the parts waiting), asks its inspector for p(defect) per
part, posts ``perception/verdict`` (p(defect) and the decision, with the confidence) and the
``proposal/inspection`` reject flags. When the reject rate over the last ``window`` parts passes
``alarm_factor`` times the rate it has learned as normal, it posts ``alarm/defect_rate`` for the process
and pacing agents (and clears it when the rate falls back).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agents.agent import decode_image, latest
from agents.blackboard import Entry, Post


class InspectionAgent:
    def __init__(self, inspector, max_parts: int, reject_threshold: float = 0.5, window: int = 40,
                 alarm_factor: float = 2.0, min_alarm_rate: float = 0.08):
        self.name, self.subscribes = "inspection", ("perception/parts",)
        self.inspector, self.max_parts, self.reject_threshold = inspector, max_parts, reject_threshold
        self.recent: deque[int] = deque(maxlen=window)
        self.alarm_factor, self.min_alarm_rate = alarm_factor, min_alarm_rate
        self.n_seen = self.n_rejected = 0
        self.alarm_on = False

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        entry = latest(inbox, "perception/parts")
        if entry is None:
            return []
        parts = entry.value["parts"]
        reject = np.zeros(self.max_parts, dtype=int)
        posts = []
        if parts:
            images = np.stack([decode_image(p["png"]) for p in parts])
            p_defect = self.inspector.p_defect(images)
            for slot, (part, p) in enumerate(zip(parts, p_defect.tolist())):
                rejected = p >= self.reject_threshold
                reject[slot] = int(rejected)
                self.recent.append(int(rejected))
                self.n_seen += 1
                self.n_rejected += int(rejected)
                posts.append(Post("perception/verdict", str(part["part_id"]),
                                  {"p_defect": p, "reject": bool(rejected)}, confidence=max(p, 1.0 - p)))
        posts.append(Post("proposal/inspection", "action", reject.tolist()))
        posts += self._alarm(tick)
        return posts

    def _alarm(self, tick: int) -> list[Post]:
        if len(self.recent) < self.recent.maxlen:
            return []
        normal = max(self.min_alarm_rate, self.n_rejected / self.n_seen)
        rate = sum(self.recent) / len(self.recent)
        raised = rate >= self.alarm_factor * normal
        if raised == self.alarm_on:
            return []
        self.alarm_on = raised
        return [Post("alarm/defect_rate", "line", {"active": raised, "reject_rate": rate, "normal_rate": normal})]
