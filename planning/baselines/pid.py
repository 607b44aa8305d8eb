"""Classical baselines for `environments.process_control.ProcessControlEnv`: fixed setpoints and a PID loop.

Both read only the env's observation vector (see `ProcessControlEnv` for the layout) and return an action in
its action space, so they run unchanged inside the whole Plant.
"""

from __future__ import annotations

import numpy as np

from environments.process_control import (
    OBS_CENTER,
    OBS_SCALE,
    ProcessControlEnv,
    ReactorConfig,
    setpoints_to_action,
)

_T, _PURITY, _JACKET_SP = 0, 3, 7  # observation indices used here


class FixedSetpoints:
    """Always the nominal jacket temperature and pressure of the config (the "fixed setpoints" baseline)."""

    def __init__(self, config: ReactorConfig | None = None):
        self.config = config or ReactorConfig()
        self._action = setpoints_to_action(self.config, self.config.nominal_jacket_c, self.config.nominal_pressure_bar)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self._action.copy()


class PIDController:
    """PID on the measured reactor temperature, moving the jacket temperature setpoint; pressure by a rule.

    Jacket setpoint = ``nominal_jacket_c + kp * e + ki * integral(e) - kd * d(T_filtered)/dt`` with
    ``e = temperature_target_c - T_measured`` (a hotter jacket always warms the reactor). Derivative on the
    (filtered) measurement avoids kicks when the target changes; anti-windup by back-calculation from the
    setpoint actually in force (observation index 7), which also absorbs the actuator's rate limit and range.
    Purity is not the controlled variable because it peaks in temperature (no monotone loop).

    Pressure follows a proportional rule on the measured purity (index 3), which rises with pressure:
    ``pressure_bar + pressure_gain_bar * (purity_target - purity)``, kept within
    ``[pressure_floor_bar, config.pressure_max_bar - pressure_margin_bar]``.

    Parameters
    ----------
    config : ReactorConfig | None
    kp : float
        Proportional gain, deg C of jacket per deg C of error.
    ki : float
        Integral gain, deg C of jacket per (deg C min) of error.
    kd : float
        Derivative gain, deg C of jacket per (deg C / min) of measurement change.
    temperature_target_c : float
        Reactor temperature to hold, deg C.
    purity_target : float
        Purity the pressure rule aims at (the reward's ``purity_spec`` by default).
    pressure_bar, pressure_gain_bar, pressure_floor_bar, pressure_margin_bar : float
        Pressure rule, see above: base pressure (bar), gain (bar per unit purity), lowest pressure (bar) and
        distance kept below the safe maximum (bar).
    derivative_filter : float
        Weight of the newest sample in the first-order filter of the measured temperature, in (0, 1].
    tracking_gain : float
        Back-calculation gain of the anti-windup, 1/tick.
    dt_min : float
        Control interval, minutes (the env's ``dt_s / 60``).

    Tuning: ``tune_pid()`` (seeds 100-109, 480-min episodes, default config) searched kp in {1, 2, 4}, ki in
    {0.1, 0.2, 0.4}, kd in {0, 2}, temperature_target_c in {84, 86, 88} and pressure_bar in {4, 5, 6}
    (162 cells, about a minute) and picked kp=2, ki=0.4, kd=0, 84 deg C, 6 bar: the defaults below. The
    reward is flat near the optimum (on held-out seeds 200-299, 86 deg C / 5 bar scores the same within
    noise); the temperature target and pressure matter far more than the gains.
    """

    def __init__(
        self,
        config: ReactorConfig | None = None,
        kp: float = 2.0,
        ki: float = 0.4,
        kd: float = 0.0,
        temperature_target_c: float = 84.0,
        purity_target: float = 0.95,
        pressure_bar: float = 6.0,
        pressure_gain_bar: float = 100.0,
        pressure_floor_bar: float = 4.0,
        pressure_margin_bar: float = 1.0,
        derivative_filter: float = 0.5,
        tracking_gain: float = 0.5,
        dt_min: float = 1.0,
    ):
        self.config = config or ReactorConfig()
        assert 0.0 < derivative_filter <= 1.0, f"derivative_filter {derivative_filter} must be in (0, 1]"
        assert dt_min > 0, "dt_min must be positive"
        self.kp, self.ki, self.kd = kp, ki, kd
        self.temperature_target_c, self.purity_target = temperature_target_c, purity_target
        self.pressure_bar, self.pressure_gain_bar = pressure_bar, pressure_gain_bar
        self.pressure_floor_bar, self.pressure_margin_bar = pressure_floor_bar, pressure_margin_bar
        self.derivative_filter, self.tracking_gain, self.dt_min = derivative_filter, tracking_gain, dt_min
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.integral = 0.0  # deg C of jacket (already multiplied by ki)
        self._t_filtered: float | None = None
        self._last_output: float | None = None

    def act(self, observation: np.ndarray) -> np.ndarray:
        cfg = self.config
        t_meas = float(observation[_T]) * OBS_SCALE[_T] + OBS_CENTER[_T]
        sp_in_force = float(observation[_JACKET_SP]) * OBS_SCALE[_JACKET_SP] + OBS_CENTER[_JACKET_SP]
        purity = float(observation[_PURITY]) * OBS_SCALE[_PURITY] + OBS_CENTER[_PURITY]

        # anti-windup: pull the integral towards what the actuator actually did last tick
        if self._last_output is not None:
            self.integral += self.tracking_gain * (sp_in_force - self._last_output)
        prev = self._t_filtered if self._t_filtered is not None else t_meas
        self._t_filtered = prev + self.derivative_filter * (t_meas - prev)
        d_meas = (self._t_filtered - prev) / self.dt_min
        error = self.temperature_target_c - t_meas
        self.integral += self.ki * error * self.dt_min
        out = cfg.nominal_jacket_c + self.kp * error + self.integral - self.kd * d_meas
        out = min(max(out, cfg.jacket_setpoint_min_c), cfg.jacket_setpoint_max_c)
        self._last_output = out

        p_hi = cfg.pressure_max_bar - self.pressure_margin_bar
        pressure = self.pressure_bar + self.pressure_gain_bar * (self.purity_target - purity)
        pressure = min(max(pressure, self.pressure_floor_bar), p_hi)
        return setpoints_to_action(cfg, out, pressure)


def tune_pid(
    config: ReactorConfig | None = None,
    seeds: list[int] | tuple[int, ...] = tuple(range(100, 110)),
    kps: tuple[float, ...] = (1.0, 2.0, 4.0),
    kis: tuple[float, ...] = (0.1, 0.2, 0.4),
    kds: tuple[float, ...] = (0.0, 2.0),
    targets_c: tuple[float, ...] = (84.0, 86.0, 88.0),
    pressures_bar: tuple[float, ...] = (4.0, 5.0, 6.0),
    tie_tolerance: float = 0.002,
    episode_minutes: float = 480.0,
) -> tuple[dict[str, float], float]:
    """Grid search of PID gains, temperature target and base pressure by mean episode reward over ``seeds``.

    The reward is flat near its optimum (purity and energy change little within +-1 deg C), so cells within
    ``tie_tolerance`` (relative) of the best reward are treated as ties and the one with the smallest
    temperature tracking error (RMS after the first hour) wins: the tighter loop is the more robust one.

    Returns
    -------
    best : dict[str, float]
        ``kp``, ``ki``, ``kd``, ``temperature_target_c``, ``pressure_bar`` of the chosen cell.
    score : float
        Its mean episode reward.
    """
    config = config or ReactorConfig()
    env = ProcessControlEnv(config, episode_minutes=episode_minutes)
    settle = round(60.0 / env.sim.dt_min)  # ticks ignored by the tracking error
    cells = []
    for target in targets_c:
        for pressure in pressures_bar:
            for kp in kps:
                for ki in kis:
                    for kd in kds:
                        pid = PIDController(config, kp=kp, ki=ki, kd=kd, temperature_target_c=target,
                                            pressure_bar=pressure, dt_min=env.sim.dt_min)
                        rewards, sq_err = [], []
                        for seed in seeds:
                            obs, _ = env.reset(seed=seed)
                            pid.reset(seed)
                            total, done, k = 0.0, False, 0
                            while not done:
                                obs, reward, terminated, truncated, _ = env.step(pid.act(obs))
                                total += reward
                                done = terminated or truncated
                                k += 1
                                if k > settle:
                                    sq_err.append((env.sim.temp_c - target) ** 2)
                            rewards.append(total)
                        cell = {"kp": kp, "ki": ki, "kd": kd, "temperature_target_c": target, "pressure_bar": pressure}
                        rms_c = float(np.sqrt(np.mean(sq_err))) if sq_err else 0.0
                        cells.append((float(np.mean(rewards)), rms_c, cell))
    best_score = max(c[0] for c in cells)
    ties = [c for c in cells if c[0] >= best_score - tie_tolerance * abs(best_score)]
    score, _, best = min(ties, key=lambda c: c[1])
    return best, score
