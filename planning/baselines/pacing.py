"""Classical line pacing: push and CONWIP (Spearman, Woodruff & Hopp, 1990).

Both read only the LinePacing observation and run every station at nominal speed; they differ in how
they release work:

* `PushRelease` releases at a fixed rate (a fraction of the bottleneck's nominal rate), whatever the line
  is doing. It is the "no control" floor.
* `ConwipRelease` keeps the number of parts in the line at a cap: each tick it releases just enough parts
  to refill the line to ``wip_cap``.
"""

from __future__ import annotations

import numpy as np

from environments.line_pacing import LineConfig, controls_to_pacing_action


class PushRelease:
    """Release at ``release_fraction`` of the bottleneck's nominal rate; stations at speed 1.0."""

    def __init__(self, config: LineConfig, release_fraction: float = 0.95):
        assert release_fraction > 0, f"release_fraction must be positive, got {release_fraction}"
        self.config = config
        rate = min(release_fraction * config.bottleneck_rate_per_h, config.max_release_per_h)
        self._action = controls_to_pacing_action(rate, [1.0] * config.n_stations, config)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self._action.copy()


class ConwipRelease:
    """Refill the line to ``wip_cap`` parts every tick (within one part, see `act`); stations at speed 1.0.

    Parameters
    ----------
    config : LineConfig
    wip_cap : int
        Parts allowed in the line at once.
    dt_s : float
        Tick length, seconds: the shortfall is released over one tick.
    """

    def __init__(self, config: LineConfig, wip_cap: int = 12, dt_s: float = 60.0):
        assert wip_cap >= 1, f"wip_cap must be at least 1, got {wip_cap}"
        self.config, self.wip_cap, self.dt_h = config, wip_cap, dt_s / 3600.0
        self._total_capacity = sum(s.buffer_capacity for s in config.stations)
        self._speeds = [1.0] * config.n_stations

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: np.ndarray) -> np.ndarray:
        n = self.config.n_stations
        wip = round(float(observation[4 * n]) * self._total_capacity)
        shortfall = max(0, self.wip_cap - wip)
        # Release attempts are spaced 1/rate apart and keep their phase from tick to tick, so a rate of
        # shortfall/dt puts `shortfall` attempts in this tick, the last at its end. After a pause (rate 0)
        # the first attempt comes at once, one more than asked: through a rate lever, CONWIP holds WIP
        # within one part of its cap rather than exactly at it.
        rate = shortfall / self.dt_h
        return controls_to_pacing_action(min(rate, self.config.max_release_per_h), self._speeds, self.config)
