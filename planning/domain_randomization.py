"""Domain randomisation: each training episode runs under its own disturbance and breakdown levels.

A controller trained on the nominal scenario alone learns its particular disturbances; one trained over
a spread of them holds up when the plant is rougher than planned. `DomainRandomized` redraws, at every
reset, a scale for the reactor's disturbances (feed drifts, catalyst drift, step disturbances) or for
the line's failure rates and repair times, and rebuilds the simulator with it. The ranges stop short
of the harder scenario (`scenarios/smart_factory_harder.yaml`), so that one stays off the training
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from environments.line_pacing import LineConfig, LinePacingEnv
from environments.process_control import ProcessControlEnv, ReactorConfig, ReactorSim


class Randomization(BaseModel):
    """Ranges the per-episode scales are drawn from (uniform); (1, 1) turns a kind off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disturbance_scale: tuple[float, float] = Field((0.5, 2.0), description="Multiplies the reactor's "
                                                   "disturbance levels (drift stds, step rate and sizes).")
    breakdown_rate_scale: tuple[float, float] = Field((0.5, 2.0), description="Multiplies each station's "
                                                      "failure rate (divides its MTBF).")
    repair_time_scale: tuple[float, float] = Field((0.7, 1.5), description="Multiplies each station's MTTR.")


def scale_disturbances(config: ReactorConfig, scale: float) -> ReactorConfig:
    """The reactor with every disturbance ``scale`` times as strong (drift stds, step rate, step sizes)."""
    return config.model_copy(update={
        "feed_conc_std_mol_per_l": config.feed_conc_std_mol_per_l * scale,
        "feed_temp_std_c": config.feed_temp_std_c * scale,
        "activity_std": min(0.3, config.activity_std * scale),
        "step_rate_per_h": config.step_rate_per_h * scale,
        "step_conc_std_mol_per_l": config.step_conc_std_mol_per_l * scale,
        "step_temp_std_c": config.step_temp_std_c * scale,
    })


def scale_breakdowns(config: LineConfig, rate_scale: float, repair_scale: float = 1.0) -> LineConfig:
    """The line with every station failing ``rate_scale`` times as often and repairs ``repair_scale`` as long."""
    stations = [s.model_copy(update={"mtbf_h": s.mtbf_h / rate_scale, "mttr_h": s.mttr_h * repair_scale})
                for s in config.stations]
    return config.model_copy(update={"stations": stations})


@dataclass
class _Draw:
    disturbance: float = 1.0
    breakdown_rate: float = 1.0
    repair_time: float = 1.0


class DomainRandomized(gym.Wrapper):
    """Rebuild the wrapped ProcessControlEnv's or LinePacingEnv's simulator at each reset under freshly
    drawn scales (see `Randomization`). The draw is seeded by ``reset(seed=...)``; ``info["randomization"]``
    gives the scales of the episode."""

    def __init__(self, env: gym.Env, randomization: Randomization | None = None):
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, (ProcessControlEnv, LinePacingEnv)):
            raise TypeError(f"DomainRandomized wraps ProcessControlEnv or LinePacingEnv, not {type(base).__name__}")
        self.randomization = randomization or Randomization()
        self.nominal = base.config
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([seed, 0xD0])
        r, base = self.randomization, self.env.unwrapped
        draw = _Draw(*(float(self._rng.uniform(*rng)) for rng in
                       (r.disturbance_scale, r.breakdown_rate_scale, r.repair_time_scale)))
        if isinstance(base, ProcessControlEnv):
            base.config = scale_disturbances(self.nominal, draw.disturbance)
            base.sim = ReactorSim(base.config, base.np_random, base.dt_s)
        else:  # LinePacingEnv builds its LineSim from .config at every reset
            base.config = scale_breakdowns(self.nominal, draw.breakdown_rate, draw.repair_time)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "randomization": draw.__dict__.copy()}
