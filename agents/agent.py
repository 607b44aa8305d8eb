"""What an agent is: it reads blackboard entries, decides, and posts back (design notes §1).

An agent is a plain object with a ``name``, the topic patterns it ``subscribes`` to, and
``decide(tick, inbox) -> list[Post]``; ``inbox`` holds the new entries matching its subscriptions since its
last turn. Agents keep no state that they could not rebuild from the blackboard:
`agents.runtime.rebuild_from_board` replays the agent's logged turns through ``decide`` (discarding the
posts), so a restarted actor, or a resumed run, continues exactly where the lost one stopped.

Topics the plant and agents use (design notes §5):

| topic                      | author     | value                                              |
|----------------------------|------------|----------------------------------------------------|
| ``state/<unit>``           | plant      | the unit's observation (process, pacing, dispatch) |
| ``perception/parts``       | plant      | images of the parts waiting at inspection (PNG)    |
| ``event/voice``            | plant      | a scripted operator command                        |
| ``proposal/<unit>``        | controller | the action the controller wants                    |
| ``perception/verdict``     | inspection | p(defect) per part                                 |
| ``alarm/defect_rate``      | inspection | a rising reject rate                               |
| ``command/<unit>``         | voice      | an operator command (engineering settings)         |
| ``veto/<unit>``            | safety, voice | why an action or command was refused or clamped |
| ``action/<unit>``          | safety     | the final action the plant executes                |
| ``cfp/*``, ``bid/*``, ``award/*``, ``done/*`` | dispatch, pacing, process | contract net over delivery orders and defect remedies |
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
from PIL import Image

from agents.blackboard import Entry, Post

UNITS = ("process", "pacing", "dispatch", "inspection")


class Agent(Protocol):
    name: str
    subscribes: tuple[str, ...]

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]: ...


def latest(inbox: Iterable[Entry], topic: str, key: str | None = None) -> Entry | None:
    """The newest entry of a topic (and key) in an inbox."""
    found = None
    for e in inbox:
        if e.topic == topic and (key is None or e.key == key):
            found = e
    return found


# ---------------------------------------------------------------- observations on the blackboard
def encode_observation(unit: str, observation: Any, mask: np.ndarray | None = None) -> Any:
    """A unit's observation as plain JSON values."""
    if unit == "dispatch":
        value = {k: np.asarray(v).tolist() for k, v in observation.items()}
        if mask is not None:
            value["action_mask"] = np.asarray(mask, dtype=bool).tolist()
        return value
    return np.asarray(observation, dtype=np.float32).tolist()


def decode_observation(unit: str, value: Any) -> Any:
    if unit == "dispatch":
        return {k: np.asarray(v, dtype=np.float32) for k, v in value.items() if k != "action_mask"}
    return np.asarray(value, dtype=np.float32)


def encode_image(image: np.ndarray) -> str:
    """uint8 HxWx3 -> base64 PNG (lossless, ~4 KB for a 64 px part)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))
