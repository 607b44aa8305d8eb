"""ProcessAgent, PacingAgent and DispatchAgent: a unit's controller (classical or learned) on the blackboard.

Each reads its unit's ``state/<unit>`` observation, asks its controller for an action and posts it as
``proposal/<unit>``. Which controller runs comes from the scenario (`agents.policies.make_controllers`).
The process and pacing agents also take part in the negotiation over defect alarms
(`agents.defect_negotiation`): while one of them holds the remedy, its proposals carry it.
"""

from __future__ import annotations

import numpy as np

from agents.agent import decode_observation, latest
from agents.blackboard import Entry, Post
from agents.defect_negotiation import DefectNegotiation


class ControllerAgent:
    """One unit's controller as an agent.

    Parameters
    ----------
    unit : str
        "process", "pacing" or "dispatch".
    controller
        An object with ``act(observation) -> action`` in the unit's action space.
    """

    def __init__(self, unit: str, controller, policy: str = "", negotiation: DefectNegotiation | None = None):
        self.name, self.unit, self.controller, self.policy = unit, unit, controller, policy
        self.negotiation = negotiation
        self.subscribes = (f"state/{unit}",) + (negotiation.subscribes if negotiation else ())

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        state = latest(inbox, f"state/{self.unit}")
        if state is None:
            return []
        obs = decode_observation(self.unit, state.value)
        posts = self.negotiation.step(tick, inbox, obs) if self.negotiation else []
        action = self.controller.act(obs)
        if self.negotiation is not None:
            action = self.negotiation.apply(action, obs)
        return posts + [Post(f"proposal/{self.unit}", "action", np.asarray(action).tolist())]


def ProcessAgent(controller, policy: str = "") -> ControllerAgent:  # noqa: N802 - reads as an agent kind
    return ControllerAgent("process", controller, policy)


def PacingAgent(controller, policy: str = "") -> ControllerAgent:  # noqa: N802
    return ControllerAgent("pacing", controller, policy)


def DispatchAgent(controller, policy: str = "") -> ControllerAgent:  # noqa: N802
    return ControllerAgent("dispatch", controller, policy)
