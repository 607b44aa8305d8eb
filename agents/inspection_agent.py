"""InspectionAgent: looks at each part at the inspection station, posts verdicts, raises defect alarms and
answers the operator's searches of the inspection history.

It reads ``perception/parts`` (the images of the parts waiting), asks its inspector for p(defect) per
part (and the defect type, when the inspector classifies), posts ``perception/verdict`` (the decision,
with the confidence) and the ``proposal/inspection`` reject flags. The defect alarm is a Shewhart p-chart, the
attribute chart of statistical process control: when the reject rate over the last ``window`` parts
passes the upper control limit ``p + sigmas * sqrt(p (1 - p) / window)``, it posts
``alarm/defect_rate`` for the process and pacing agents (and clears it when the rate falls a sigma below).
``p``, the normal rate, is learned from the parts that have left the window, so an upset does not
raise its own baseline while it is in the window (a running mean over every part did, and hid a
catalyst upset). The chart starts once ``baseline_min`` parts have left the window: a baseline of a
few dozen parts from the start-up is too noisy to hold a limit. A lasting change of level is learned
in time, so its alarm clears rather than staying on for the rest of the run.

With a CLIP model it also embeds every inspected part into a retrieval index, and answers each
``query/parts`` entry ({"text", "k"}, posted by the VoiceAgent) on ``answer/parts`` with the best
matching parts. Parts are embedded in batches of ``index_batch`` (4) at the scenario's ``clip_views``
(one by default; four cost 4x). The batch is small because the tick that embeds it pays for all of it:
on the CLIP trunk of 2026-11-25, batches of 8 put the Ray tick p99 at 63 ms and batches of 4 at 43 ms
(benchmarks/runtime_speed.py; the tick deadline is 200 ms and the latency target's p99 50 ms, with warm
models, see ``_warm_up``). Since 2026-12-08 CLIP embeds on its INT8 graph where the scenario's
``agents.inspection.runtime`` is int8 (the default): 4.1 ms a batch against 14.6 in torch, and the Ray
tick p99 went from 52-58 to 41-50 ms. A query first embeds what is still waiting, so the answer covers every
inspection so far. The index is rebuilt, like everything else here, by replaying the agent's turns.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agents.agent import decode_image, latest
from agents.blackboard import Entry, Post
from environments.parts import DEFECT_TYPES


class InspectionAgent:
    def __init__(self, inspector, max_parts: int, reject_threshold: float | None = None, vlm=None,
                 window: int = 40, sigmas: float = 3.0, min_alarm_rate: float = 0.08, baseline_min: int = 120,
                 index_batch: int = 4):
        self.name, self.subscribes = "inspection", ("perception/parts", "query/parts")
        self.inspector, self.max_parts = inspector, max_parts
        self.reject_threshold = inspector.reject_threshold if reject_threshold is None else reject_threshold
        self.vlm = vlm
        self.history = None
        if vlm is not None:
            from perception.clip_model import RetrievalIndex  # torch, only in a process that has a CLIP anyway

            self.history = RetrievalIndex(vlm)
        self.index_batch = index_batch
        self._warm_up()
        self._to_index: list[tuple[tuple[int, int], np.ndarray, dict]] = []  # inspected, not yet embedded
        self.recent: deque[int] = deque(maxlen=window)
        self.sigmas, self.min_alarm_rate, self.baseline_min = sigmas, min_alarm_rate, baseline_min
        self.baseline_seen = self.baseline_rejected = 0  # parts that have left the window
        self.alarm_on = False

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        posts = []
        entry = latest(inbox, "perception/parts")
        if entry is not None:
            posts += self._inspect(tick, entry.value["parts"])
        for query in (e for e in inbox if e.topic == "query/parts"):
            posts.append(self._answer(query))
        return posts

    def _inspect(self, tick: int, parts: list[dict]) -> list[Post]:
        reject = np.zeros(self.max_parts, dtype=int)
        posts = []
        if parts:
            images = np.stack([decode_image(p["png"]) for p in parts])
            if hasattr(self.inspector, "class_probs"):  # a classifier also names the defect
                probs = self.inspector.class_probs(images)
                p_defect, kind = 1.0 - probs[:, 0], [DEFECT_TYPES[k + 1] for k in probs[:, 1:].argmax(axis=1)]
            else:
                p_defect = self.inspector.p_defect(images)
                kind = ["defect"] * len(parts)
            verdicts = []
            for slot, (part, p) in enumerate(zip(parts, p_defect.tolist())):
                rejected = p >= self.reject_threshold
                reject[slot] = int(rejected)
                if len(self.recent) == self.recent.maxlen:
                    self.baseline_seen += 1
                    self.baseline_rejected += self.recent[0]
                self.recent.append(int(rejected))
                verdicts.append(kind[slot] if rejected else "good")
                posts.append(Post("perception/verdict", str(part["part_id"]),
                                  {"p_defect": p, "reject": bool(rejected), "defect": verdicts[-1]},
                                  confidence=max(p, 1.0 - p)))
            if self.history is not None:  # one entry per inspection: a reworked part comes back to the station
                self._to_index += [((p["part_id"], tick), image, {"part_id": p["part_id"], "tick": tick, "verdict": v})
                                   for p, image, v in zip(parts, images, verdicts)]
                if len(self._to_index) >= self.index_batch:
                    self._flush_index()
        posts.append(Post("proposal/inspection", "action", reject.tolist()))
        posts += self._alarm(tick)
        return posts

    def _warm_up(self) -> None:
        """Run the models once before the first tick: torch's first call on a shape allocates and plans,
        which would otherwise land inside a tick's deadline."""
        size = getattr(self.inspector, "image_size", 64)
        if hasattr(self.inspector, "class_probs"):
            self.inspector.class_probs(np.zeros((self.max_parts, size, size, 3), np.uint8))
        if self.vlm is not None:
            self.vlm.warm_up(self.index_batch)

    def _flush_index(self) -> None:
        if self._to_index:
            keys, images, metadata = zip(*self._to_index)
            self.history.add(list(keys), self.vlm.encode_images(np.stack(images)), list(metadata))
            self._to_index = []

    def _answer(self, query: Entry) -> Post:
        text, k = str(query.value.get("text", "")), int(query.value.get("k", 10))
        if self.history is None:
            return Post("answer/parts", query.key, {"text": text, "results": [],
                                                    "reason": "no CLIP model: agents.inspection.clip is off"})
        self._flush_index()
        found = self.history.query(text, k) if text.strip() and len(self.history) else []
        results = [{**self.history.metadata(key), "score": round(score, 4)} for key, score in found]
        return Post("answer/parts", query.key, {"text": text, "results": results,
                                                "history_size": len(self.history)})

    def _alarm(self, tick: int) -> list[Post]:
        n = self.recent.maxlen
        if len(self.recent) < n or self.baseline_seen < self.baseline_min:
            return []
        # The floor keeps a near-zero baseline from putting the limit within one or two rejects.
        normal = max(self.min_alarm_rate, self.baseline_rejected / self.baseline_seen)
        sd = float(np.sqrt(normal * (1.0 - normal) / n))
        limit = normal + self.sigmas * sd
        rate = sum(self.recent) / n
        # It clears one sigma lower than it rises: one part in or out of the window at the limit must
        # not toggle the alarm, and with it the negotiated remedy, every few ticks.
        raised = rate > (limit - sd if self.alarm_on else limit)
        if raised == self.alarm_on:
            return []
        self.alarm_on = raised
        return [Post("alarm/defect_rate", "line", {"active": raised, "reject_rate": rate, "normal_rate": normal,
                                                   "control_limit": limit})]
