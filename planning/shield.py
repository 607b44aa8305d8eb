"""The safety shield: the plant's safety checks between a policy and the environment it acts on.

A learned controller is trained *behind* the same checks that guard it in the plant (the SafetyAgent
runs `planning.safety` on every action), so it learns what the plant will actually do with its actions
and never sees the reward of an action the plant would refuse. `SafetyShield` wraps a
``ProcessControlEnv`` or a ``LinePacingEnv``:

* process: setpoints clamped into the scenario's limits; near the reactor's temperature band a jacket
  move that pushes it further out is vetoed (the setpoint in force is held). The setpoints' own rate
  limits are the actuator's (the simulator moves them at most ``*_rate_limit_*_per_min``).
* pacing: release rate and speeds clamped into the limits; each station's speed moves at most
  ``safety.speed_change_max_per_tick`` per tick.

``info["shield"]`` says, per step, whether the action was clamped or vetoed; ``interventions`` counts
the steps the shield changed since construction.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from environments.line_pacing import LinePacingEnv
from environments.process_control import ProcessControlEnv
from planning.safety import (
    SafetyLimits,
    check_pacing,
    check_process,
    pacing_ok,
    process_setpoints_ok,
)


class SafetyShield(gym.Wrapper):
    """Pass every action through the safety checks of ``limits`` before the wrapped env sees it.

    Parameters
    ----------
    env : a ProcessControlEnv or LinePacingEnv (possibly wrapped).
    limits : the envelope, usually ``SafetyLimits.from_scenario(scenario)``.
    """

    def __init__(self, env: gym.Env, limits: SafetyLimits):
        super().__init__(env)
        base = env.unwrapped
        if isinstance(base, ProcessControlEnv):
            self.unit = "process"
        elif isinstance(base, LinePacingEnv):
            self.unit = "pacing"
        else:
            raise TypeError(f"SafetyShield wraps ProcessControlEnv or LinePacingEnv, not {type(base).__name__}")
        self.limits = limits
        self.interventions = 0
        self._obs: np.ndarray | None = None
        self._previous_obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs, self._previous_obs = obs, None
        return obs, info

    def shield(self, action) -> tuple[np.ndarray, bool, bool, tuple[str, ...]]:
        """The action the plant may take, and whether it was clamped or vetoed (with reasons)."""
        config = self.env.unwrapped.config
        if self.unit == "process":
            verdict = check_process(action, self._obs, self.limits, config, self._previous_obs)
        else:
            verdict = check_pacing(action, self.limits, config, self._obs)
        return verdict.action, verdict.clamped, verdict.vetoed, verdict.reasons

    def step(self, action):
        safe, clamped, vetoed, reasons = self.shield(action)
        self.interventions += bool(clamped or vetoed)
        obs, reward, terminated, truncated, info = self.env.step(safe)
        self._obs, self._previous_obs = obs, self._obs
        info = {**info, "shield": {"clamped": clamped, "vetoed": vetoed, "reasons": reasons}}
        return obs, reward, terminated, truncated, info

    def action_ok(self, action) -> bool:
        """True when ``action`` lies inside the static limits (for audits and tests)."""
        config = self.env.unwrapped.config
        if self.unit == "process":
            return process_setpoints_ok(action, self.limits, config)
        return pacing_ok(action, self.limits, config)
