"""A serial production line: N stations, finite buffers, stochastic processing, breakdowns, defects and rework.

The line model
--------------
Parts are released into the input buffer of station 0, flow through stations 0..N-1 and are inspected on
leaving the last one. Each station has a finite *input* buffer (``buffer_capacity``); the part in service is
not in the buffer. A station that finishes a part while the next buffer is full holds it and is *blocked*
(blocking after service); a station with an empty input buffer is *starved*.

* Processing time at station ``i``: gamma distributed with mean ``mean_process_min / speed_i`` and
  coefficient of variation ``process_cv``. Speed factors are the controller's lever.
* Breakdowns are operation-dependent (Buzacott & Shanthikumar, 1993): a station fails after an exponential
  amount of *working* time with mean ``mtbf_h`` and is repaired in an exponential time with mean ``mttr_h``.
  Starved or blocked stations do not wear. Scripted breakdowns (`LineSim.force_breakdown`) come on top.
* Releases: the release rate (parts per hour) spaces release attempts evenly; an attempt that finds the
  first buffer full is lost (raw material stays in the warehouse, it is not counted as released).
* Defects: each part carries a hazard, raised at release by poor feed purity and at every station by speed
  above nominal; on leaving the line it is defective with probability ``1 - exp(-(base + hazard))``, its type
  drawn from ``defect_type_weights`` (indices into `environments.parts.DEFECT_TYPES`, 0 = good).
* Inspection: a rejected part is reworked (sent back to the head of the line, ahead of new releases) with
  probability ``rework_fraction``, otherwise scrapped. A passed part ships. Standalone, a built-in inspector
  with ``detection_rate`` and ``false_alarm_rate`` decides; in the whole Plant the inspection agent does
  (``external_inspection=True``, see `LineSim.resolve_inspection`).

Books: ``released == shipped + scrapped + wip`` at every instant, where wip counts buffers, stations,
the rework queue and parts awaiting inspection.

The core (`LineSim`) is a plain event-driven simulator with no gym dependency; `LinePacingEnv` is the
Gymnasium wrapper. Random numbers come from the seeded generator in pre-drawn batches, so the simulator is
deterministic for a seed and fast (one heap event per part per station).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, model_validator

from environments.draws import Draws, UnitGamma


STARVED, BUSY, BLOCKED = 0, 1, 2


class StationConfig(BaseModel):
    """One workstation and its input buffer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("station", description="Name shown in reports and plots.")
    mean_process_min: float = Field(1.0, gt=0, description="Mean processing time at speed 1.0, minutes.")
    process_cv: float = Field(0.3, ge=0.01, le=2.0, description="Coefficient of variation of processing time.")
    mtbf_h: float = Field(8.0, gt=0, description="Mean working time between failures, hours.")
    mttr_h: float = Field(0.25, ge=0, description="Mean time to repair, hours (0 disables breakdowns).")
    buffer_capacity: int = Field(5, ge=1, le=10_000, description="Input buffer capacity, parts.")
    busy_power_kw: float = Field(5.0, ge=0, description="Electrical power while processing at speed 1.0, kW.")
    idle_power_kw: float = Field(1.0, ge=0, description="Electrical power while idle, blocked or down, kW.")


class LineConfig(BaseModel):
    """A serial line: its stations, how its parts go wrong, and how they are inspected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stations: list[StationConfig] = Field(
        default_factory=lambda: [
            StationConfig(name="cutting", mean_process_min=0.9),
            StationConfig(name="forming", mean_process_min=1.0),
            StationConfig(name="welding", mean_process_min=0.95, mtbf_h=6.0, mttr_h=0.3),
            StationConfig(name="finishing", mean_process_min=0.85),
        ],
        min_length=1,
        max_length=64,
        description="Stations in flow order.",
    )
    max_release_per_h: float = Field(90.0, gt=0, description="Largest release rate the controller may ask for, parts/h.")
    speed_min: float = Field(0.6, gt=0, description="Slowest station speed factor.")
    speed_max: float = Field(1.4, gt=0, description="Fastest station speed factor.")
    base_defect_hazard: float = Field(0.02, ge=0, description="Defect hazard of a part made at nominal speed and purity.")
    speed_defect_gain: float = Field(0.12, ge=0, description="Hazard added per station per unit of speed above 1.0.")
    purity_reference: float = Field(0.95, gt=0, le=1, description="Feed purity below which defects rise.")
    purity_defect_gain: float = Field(2.0, ge=0, description="Hazard added per unit of purity shortfall.")
    defect_type_weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        min_length=6,
        max_length=6,
        description="Relative frequency of scratch, crack, dent, stain, missing_hole, burr.",
    )
    detection_rate: float = Field(0.95, ge=0, le=1, description="Built-in inspector: share of defective parts rejected.")
    false_alarm_rate: float = Field(0.01, ge=0, le=1, description="Built-in inspector: share of good parts rejected.")
    rework_fraction: float = Field(0.5, ge=0, le=1, description="Share of rejected parts sent back for rework.")
    wip_cost_per_h: float = Field(0.05, ge=0, description="Holding cost per part in the line per hour (reward).")
    part_margin: float = Field(1.0, ge=0, description="Value of one good part shipped (reward).")
    scrap_cost: float = Field(0.5, ge=0, description="Cost of one scrapped part (reward).")
    energy_price_per_kwh: float = Field(0.02, ge=0, description="Cost of one kWh (reward).")

    @model_validator(mode="after")
    def _check(self) -> LineConfig:
        if self.speed_min > self.speed_max:
            raise ValueError(f"speed_min {self.speed_min} must not exceed speed_max {self.speed_max}")
        if sum(self.defect_type_weights) <= 0 or min(self.defect_type_weights) < 0:
            raise ValueError(f"defect_type_weights {self.defect_type_weights} must be >= 0 with a positive sum")
        return self

    @property
    def n_stations(self) -> int:
        return len(self.stations)

    @property
    def bottleneck_rate_per_h(self) -> float:
        """Nominal capacity of the slowest station at speed 1.0, ignoring breakdowns, parts/h."""
        return min(60.0 / s.mean_process_min for s in self.stations)


class LineSim:
    """Event-driven serial-line simulator (no gym). Time is in minutes since reset.

    Parameters
    ----------
    config : LineConfig
    rng : np.random.Generator
        The only source of randomness.
    dt_s : float
        Length of one control tick, seconds.
    external_inspection : bool
        If True, finished parts wait in `awaiting_inspection` until `resolve_inspection` is called
        (the Plant's inspection agent decides); otherwise the built-in inspector decides at once.

    A part is a list ``[part_id, release_time_min, defect_hazard, defect_type]``.
    """

    def __init__(self, config: LineConfig, rng: np.random.Generator, dt_s: float = 60.0,
                 external_inspection: bool = False):
        assert dt_s > 0, "dt_s must be positive"
        self.config, self.rng, self.dt_min = config, rng, dt_s / 60.0
        self.external_inspection = external_inspection
        weights = np.asarray(config.defect_type_weights, dtype=float)
        self._defect_cdf = (np.cumsum(weights) / weights.sum()).tolist()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        cfg, n = self.config, self.config.n_stations
        self._draws = Draws(self.rng)
        self._gamma = [UnitGamma(self.rng, s.process_cv) for s in cfg.stations]
        self._mean_min = [s.mean_process_min for s in cfg.stations]
        self._cap = [s.buffer_capacity for s in cfg.stations]
        self._mtbf_min = [s.mtbf_h * 60.0 for s in cfg.stations]
        self._mttr_min = [s.mttr_h * 60.0 for s in cfg.stations]
        self._busy_kw = [s.busy_power_kw for s in cfg.stations]
        self._idle_kw = [s.idle_power_kw for s in cfg.stations]
        self.now = 0.0  # minutes since reset
        self.buffers: list[deque] = [deque() for _ in range(n)]
        self.status = [STARVED] * n
        self.holding: list[list | None] = [None] * n  # part in service, or finished and blocked
        self.speed = [1.0] * n
        self.release_rate_per_h = 0.0
        self.purity = 1.0  # feed purity from the process unit; the Plant sets it every tick
        self._ttf = [self._draws.e() * m if r > 0 else math.inf for m, r in zip(self._mtbf_min, self._mttr_min)]
        self.down_until = [-math.inf] * n  # end of the latest outage booked, per station
        self._outages: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # (from, until) not yet closed
        self._down_closed_min = [0.0] * n  # outage minutes of closed intervals
        self._last_attempt = -math.inf  # time of the last release attempt
        self._done_at = [math.inf] * n
        self._work = [(0.0, 0.0)] * n  # (processing minutes, busy kW) of the part in service
        self._events: list[tuple[float, int, int]] = []  # (time, seq, station or -1 for a release)
        self._seq = 0
        self._stamp = [0] * (n + 1)  # seq of each station's live event; index -1 = release
        self.rework_queue: deque = deque()
        self.awaiting_inspection: list[list] = []
        self.shipped_this_tick: list[list] = []
        self._next_part_id = 0
        # books
        self.released = self.shipped = self.shipped_good = self.scrapped = self.reworked = 0
        self.lost_releases = 0
        self.wip = 0
        # KPI accumulators
        self.inspected_defective = self.inspected_good = self.escapes = self.false_alarms = 0
        self._wip_area = 0.0
        self._t_area = 0.0
        self._lead_time_sum_min = 0.0
        self.busy_min = [0.0] * n
        self._busy_kwh = 0.0
        self._idle_kw_busy_min = 0.0
        self._idle_kw_total = sum(self._idle_kw)
        self.last_energy_kwh = 0.0

    # ---------------------------------------------------------------- control
    def set_controls(self, release_rate_per_h: float, speeds) -> None:
        """Apply the release rate (parts/h) and per-station speed factors, clipped to the line's limits."""
        cfg = self.config
        assert len(speeds) == cfg.n_stations, f"{len(speeds)} speeds for {cfg.n_stations} stations"
        lo, hi = cfg.speed_min, cfg.speed_max
        self.speed = [min(max(float(s), lo), hi) for s in speeds]
        rate = min(max(float(release_rate_per_h), 0.0), cfg.max_release_per_h)
        if rate != self.release_rate_per_h:
            self.release_rate_per_h = rate
            # Keep the attempts' phase: the next one comes 1/rate after the last, or now if that is past.
            # (Restarting from now at every change would starve a line whose controller adjusts every tick.)
            if rate > 0:
                self._push(max(self.now, self._last_attempt + 60.0 / rate), -1)
            else:
                self._stamp[-1] = -1

    def force_breakdown(self, station: int, duration_min: float) -> None:
        """A scripted breakdown: the station is down for ``duration_min`` from now, on top of random failures."""
        assert 0 <= station < self.config.n_stations, f"no station {station}"
        begin = max(self.now, self.down_until[station])
        outages = self._outages[station]
        if self.status[station] == BUSY:  # the part in service waits out the repair, and so do its failures
            outages[:] = [(f + duration_min, u + duration_min) if f >= self.now else (f, u) for f, u in outages]
            self._done_at[station] += duration_min
            self._push(self._done_at[station], station)
        outages.append((begin, begin + duration_min))
        self.down_until[station] = max(self.down_until[station], begin + duration_min)

    # ----------------------------------------------------------------- events
    def _push(self, t: float, who: int) -> None:
        self._seq += 1
        self._stamp[who] = self._seq
        heapq.heappush(self._events, (t, self._seq, who))

    def _account(self) -> None:
        self._wip_area += self.wip * (self.now - self._t_area)
        self._t_area = self.now

    def _try_start(self, i: int) -> None:
        """Station i pulls its next part if it is free; the space that frees unblocks the station upstream."""
        while self.status[i] == STARVED and self.buffers[i]:
            part = self.buffers[i].popleft()
            if i == 0 and self.rework_queue:
                self.buffers[0].append(self.rework_queue.popleft())
            speed = self.speed[i]
            process = self._mean_min[i] / speed * self._gamma[i]()
            part[2] += self.config.speed_defect_gain * max(0.0, speed - 1.0)
            self._work[i] = (process, self._busy_kw[i] * speed * speed)
            start = self.now if self.now > self.down_until[i] else self.down_until[i]
            if self._outages[i]:
                self._close_outages(i)
            duration, work_left, ttf = process, process, self._ttf[i]
            while ttf <= work_left:  # the station fails one or more times during this part
                repair = self._draws.e() * self._mttr_min[i]
                fails_at = start + duration - work_left + ttf
                self._outages[i].append((fails_at, fails_at + repair))
                self.down_until[i] = fails_at + repair
                duration += repair
                work_left -= ttf
                ttf = self._draws.e() * self._mtbf_min[i]
            self._ttf[i] = ttf - work_left
            self.status[i], self.holding[i] = BUSY, part
            self._done_at[i] = start + duration
            self._push(start + duration, i)
            if i > 0 and self.status[i - 1] == BLOCKED:  # hand over the upstream part and go on upstream
                self.buffers[i].append(self.holding[i - 1])
                self.status[i - 1], self.holding[i - 1] = STARVED, None
                i -= 1
            else:
                return

    def _close_outages(self, i: int) -> None:
        """Move station i's outages that have ended into the closed total."""
        still = []
        for f, u in self._outages[i]:
            if u <= self.now:
                self._down_closed_min[i] += u - f
            else:
                still.append((f, u))
        self._outages[i] = still

    def _finish(self, i: int) -> None:
        process, kw = self._work[i]
        self.busy_min[i] += process
        self._busy_kwh += kw * process / 60.0
        self._idle_kw_busy_min += self._idle_kw[i] * process  # idle power is not drawn while busy
        part = self.holding[i]
        if i + 1 < len(self._cap):
            if len(self.buffers[i + 1]) < self._cap[i + 1]:
                self.buffers[i + 1].append(part)
                self.status[i], self.holding[i] = STARVED, None
                self._try_start(i + 1)
                self._try_start(i)
            else:
                self.status[i] = BLOCKED
            return
        self.status[i], self.holding[i] = STARVED, None
        self._leave_line(part)
        self._try_start(i)

    def _leave_line(self, part: list) -> None:
        """The part leaves the last station: draw whether it is defective, then inspect it."""
        cfg = self.config
        if self._draws.u() < 1.0 - math.exp(-(cfg.base_defect_hazard + part[2])):
            u = self._draws.u()
            part[3] = 1 + next((k for k, c in enumerate(self._defect_cdf) if u <= c), 5)
        else:
            part[3] = 0
        if self.external_inspection:
            self.awaiting_inspection.append(part)
            return
        reject = self._draws.u() < (cfg.detection_rate if part[3] else cfg.false_alarm_rate)
        self._dispose(part, reject)

    def _dispose(self, part: list, reject: bool) -> None:
        if part[3]:
            self.inspected_defective += 1
            self.escapes += not reject
        else:
            self.inspected_good += 1
            self.false_alarms += reject
        if not reject:
            self._account()
            self.wip -= 1
            self.shipped += 1
            if part[3] == 0:
                self.shipped_good += 1
                self._lead_time_sum_min += self.now - part[1]
            self.shipped_this_tick.append(part)
        elif self._draws.u() < self.config.rework_fraction:
            self.reworked += 1
            part[2], part[3] = 0.0, 0  # rework removes what went wrong; the part is remade from station 0
            if len(self.buffers[0]) < self._cap[0]:
                self.buffers[0].append(part)
                self._try_start(0)
            else:
                self.rework_queue.append(part)
        else:
            self._account()
            self.wip -= 1
            self.scrapped += 1

    def _release(self) -> None:
        if len(self.buffers[0]) < self._cap[0]:
            self._account()
            hazard = self.config.purity_defect_gain * max(0.0, self.config.purity_reference - self.purity)
            self.buffers[0].append([self._next_part_id, self.now, hazard, 0])
            self._next_part_id += 1
            self.released += 1
            self.wip += 1
            self._try_start(0)
        else:
            self.lost_releases += 1
        self._push(self.now + 60.0 / self.release_rate_per_h, -1)

    def advance(self, until_min: float) -> None:
        """Simulate every event up to ``until_min`` (minutes since reset)."""
        events, stamp = self._events, self._stamp
        while events and events[0][0] <= until_min:
            t, seq, who = heapq.heappop(events)
            if seq != stamp[who]:
                continue  # superseded: a rate change or a scripted breakdown rescheduled it
            self.now = t
            if who < 0:
                self._last_attempt = t
                self._release()
            else:
                self._finish(who)
        self.now = until_min
        self._account()

    def step(self, release_rate_per_h: float, speeds) -> None:
        """One control tick: apply the controls, then simulate ``dt`` minutes."""
        self.shipped_this_tick = []
        before = self.energy_kwh()
        self.set_controls(release_rate_per_h, speeds)
        self.advance(self.now + self.dt_min)
        self.last_energy_kwh = self.energy_kwh() - before

    def resolve_inspection(self, reject) -> None:
        """Apply verdicts (True = reject) to the first ``len(reject)`` parts awaiting inspection, in order.

        Parts beyond them keep waiting at the inspection station for a later tick.
        """
        assert len(reject) <= len(self.awaiting_inspection), \
            f"{len(reject)} verdicts for {len(self.awaiting_inspection)} parts awaiting inspection"
        parts = self.awaiting_inspection[: len(reject)]
        del self.awaiting_inspection[: len(reject)]
        for part, r in zip(parts, reject):
            self._dispose(part, bool(r))

    # ------------------------------------------------------------ read-outs
    def energy_kwh(self) -> float:
        """Line energy so far: busy power scales with speed squared; idle power runs the rest of the time."""
        return self._busy_kwh + (self._idle_kw_total * self.now - self._idle_kw_busy_min) / 60.0

    def buffer_levels(self) -> list[int]:
        return [len(b) for b in self.buffers]

    def stations_down(self) -> list[bool]:
        now = self.now
        return [any(f <= now < u for f, u in outages) for outages in self._outages]

    def down_minutes(self) -> list[float]:
        """Minutes each station has been down so far (random failures and scripted breakdowns)."""
        now = self.now
        return [closed + sum(max(0.0, min(u, now) - f) for f, u in outages)
                for closed, outages in zip(self._down_closed_min, self._outages)]

    def wip_now(self) -> int:
        return self.wip

    def kpis(self) -> dict[str, float]:
        """The line's KPIs since reset (definitions in design notes §3)."""
        hours = max(self.now / 60.0, 1e-9)
        n = self.config.n_stations
        produced = self.inspected_good + self.inspected_defective
        availability = 1.0 - sum(self.down_minutes()) / max(n * self.now, 1e-9)
        ideal_cycle_min = max(s.mean_process_min for s in self.config.stations)
        operating_min = max(self.now * availability, 1e-9)
        performance = min(1.0, produced * ideal_cycle_min / operating_min)
        quality = self.shipped_good / produced if produced else 0.0
        return {
            "throughput_per_hour": self.shipped_good / hours,
            "oee": availability * performance * quality,
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "wip_mean": self._wip_area / max(self.now, 1e-9),
            "lead_time_mean_min": self._lead_time_sum_min / self.shipped_good if self.shipped_good else 0.0,
            "scrap_rate": self.scrapped / self.released if self.released else 0.0,
            "defect_escape_rate": self.escapes / self.inspected_defective if self.inspected_defective else 0.0,
            "false_alarm_rate": self.false_alarms / self.inspected_good if self.inspected_good else 0.0,
            "line_energy_kwh": self.energy_kwh(),
            "released": float(self.released),
            "shipped": float(self.shipped),
            "shipped_good": float(self.shipped_good),
            "scrapped": float(self.scrapped),
            "reworked": float(self.reworked),
            "lost_releases": float(self.lost_releases),
        }


class LinePacingEnv(gym.Env):
    """Pace a serial line: set the release rate and each station's speed.

    ## Observation
    ``Box(float32, shape=(4 * N + 6,))`` for a line of N stations, every entry in [0, 1] unless noted:

    | index          | meaning                                                          |
    |----------------|------------------------------------------------------------------|
    | 0 .. N-1       | input buffer level / capacity, per station                       |
    | N .. 2N-1      | 1 if the station is processing                                   |
    | 2N .. 3N-1     | 1 if the station is blocked or down (not able to produce)        |
    | 3N .. 4N-1     | current speed factor, scaled from [speed_min, speed_max] to [0, 1] |
    | 4N             | WIP / total buffer capacity (can exceed 1 with rework, max 2)    |
    | 4N+1           | current release rate / max_release_per_h                         |
    | 4N+2           | feed purity from the process unit                                |
    | 4N+3           | good parts shipped this tick / (bottleneck rate per tick), max 4 |
    | 4N+4           | parts rejected at inspection this tick / (rate per tick), max 4  |
    | 4N+5           | fraction of the episode elapsed                                  |

    ## Action
    ``Box(-1, 1, shape=(N + 1,), float32)``: ``a[0]`` maps linearly to a release rate in
    [0, max_release_per_h] parts/h, ``a[1:]`` to speed factors in [speed_min, speed_max].

    ## Reward
    Per tick: ``part_margin * good_shipped - scrap_cost * scrapped - wip_cost_per_h * wip * dt_h
    - energy_price_per_kwh * energy_kwh``. Faster stations ship more but make more defects and burn more
    energy (power grows with speed squared); releasing more raises throughput until WIP only adds cost.

    ## Start and end
    The line starts empty with all stations up. Standalone, feed purity follows a seeded mean-reverting
    random walk around ``purity_mean`` (in the Plant the process unit sets it). The episode is truncated
    after ``episode_minutes``; it never terminates.

    ## KPIs
    ``info`` carries the tick's shipments; `LineSim.kpis` gives throughput_per_hour, oee, wip_mean,
    lead_time_mean_min, scrap_rate, defect_escape_rate and false_alarm_rate.

    ## Version history
    * v0: first release.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: LineConfig | None = None, dt_s: float = 60.0, episode_minutes: float = 480.0,
                 purity_mean: float = 0.96, purity_std: float = 0.02):
        self.config = config or LineConfig()
        self.dt_s, self.episode_minutes = dt_s, episode_minutes
        self.purity_mean, self.purity_std = purity_mean, purity_std
        n = self.config.n_stations
        self.observation_space = spaces.Box(0.0, 4.0, shape=(4 * n + 6,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n + 1,), dtype=np.float32)
        self.sim: LineSim | None = None

    def action_to_controls(self, action) -> tuple[float, list[float]]:
        """Map a normalised action to (release rate parts/h, speed factors)."""
        return pacing_action_to_controls(action, self.config)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim = LineSim(self.config, self.np_random, self.dt_s)
        self._purity = self.purity_mean
        self.sim.purity = self._purity
        self._ticks = 0
        return line_observation(self.sim, 0, 0, 0.0), {}

    def step(self, action):
        sim, cfg = self.sim, self.config
        assert sim is not None, "call reset() before step()"
        # Feed purity: mean-reverting noise, so the controller sees low-purity spells it must slow down for.
        self._purity += 0.1 * (self.purity_mean - self._purity) + self.purity_std * 0.45 * float(
            self.np_random.standard_normal())
        sim.purity = min(1.0, max(0.0, self._purity))
        good0, scrap0, rej0 = sim.shipped_good, sim.scrapped, sim.reworked + sim.scrapped
        sim.step(*self.action_to_controls(action))
        good, scrapped = sim.shipped_good - good0, sim.scrapped - scrap0
        rejected = sim.reworked + sim.scrapped - rej0
        reward = line_reward(cfg, good, scrapped, sim.wip, self.dt_s, sim.last_energy_kwh)
        self._ticks += 1
        elapsed = self._ticks * self.dt_s / 60.0 / self.episode_minutes
        obs = line_observation(sim, good, rejected, elapsed)
        info = {"good_shipped": good, "scrapped": scrapped, "wip": sim.wip, "energy_kwh": sim.last_energy_kwh}
        return obs, float(reward), False, elapsed >= 1.0 - 1e-9, info


def pacing_action_to_controls(action, config: LineConfig) -> tuple[float, list[float]]:
    """A normalised LinePacing action -> (release rate parts/h, speed factors), linearly over the limits."""
    a = [min(1.0, max(-1.0, x)) for x in np.asarray(action, dtype=np.float64).tolist()]
    span = 0.5 * (config.speed_max - config.speed_min)
    return (a[0] + 1.0) * 0.5 * config.max_release_per_h, [config.speed_min + (x + 1.0) * span for x in a[1:]]


def line_reward(config: LineConfig, good: int, scrapped: int, wip: int, dt_s: float, energy_kwh: float) -> float:
    """The LinePacing reward of one tick (see `LinePacingEnv`)."""
    return float(config.part_margin * good - config.scrap_cost * scrapped
                 - config.wip_cost_per_h * wip * dt_s / 3600.0 - config.energy_price_per_kwh * energy_kwh)


def line_observation(sim: LineSim, good_this_tick: int, rejected_this_tick: int, elapsed: float) -> np.ndarray:
    """The LinePacing observation (layout in `LinePacingEnv`), shared with the Plant's pacing agent."""
    cfg = sim.config
    per_tick = max(cfg.bottleneck_rate_per_h * sim.dt_min / 60.0, 1e-9)
    span = cfg.speed_max - cfg.speed_min or 1.0
    caps = sim._cap
    obs = [len(b) / c for b, c in zip(sim.buffers, caps)]
    down = sim.stations_down()
    obs += [1.0 if s == BUSY and not d else 0.0 for s, d in zip(sim.status, down)]
    obs += [1.0 if s == BLOCKED or d else 0.0 for s, d in zip(sim.status, down)]
    obs += [(s - cfg.speed_min) / span for s in sim.speed]
    obs += [min(2.0, sim.wip / sum(caps)), sim.release_rate_per_h / cfg.max_release_per_h, sim.purity,
            min(4.0, good_this_tick / per_tick), min(4.0, rejected_this_tick / per_tick), min(1.0, elapsed)]
    return np.asarray(obs, dtype=np.float32)
