"""A jacketed, pressurised stirred-tank reactor: A + G -> B wanted, 2 B -> C unwanted.

The process model
-----------------
A liquid feed of reactant A (concentration ``C_Af``, temperature ``T_f``) flows through a continuously stirred
tank of volume ``V`` at flow ``q`` (residence time ``tau = V / q``). A gas G is held over the liquid at pressure
``P`` by a compressor; dissolved G turns A into the product B. B dimerises to the by-product C. Both reactions
are exothermic and follow Arrhenius kinetics (the pc-gym / Seborg CSTR, extended by a series side reaction and
a gas reactant)::

    r1 = a * k1(T) * f(P) * C_A            mol/(L min)   A + G -> B,  dH1 < 0
    r2 = k2(T) * C_B**2                     mol/(L min)   2 B -> C,    dH2 < 0 (per mol B)
    k_i(T) = k_i,ref * exp(-E_i / R * (1 / T - 1 / T_ref))
    f(P) = [P / (P + P_half)] / [P_ref / (P_ref + P_half)]    (gas uptake saturates with pressure)

    dC_A/dt = (C_Af - C_A) / tau - r1
    dC_B/dt = -C_B / tau + r1 - r2
    dC_C/dt = -C_C / tau + r2 / 2
    dT/dt   = (T_f - T) / tau + (-dH1 r1 - dH2 r2) / rho_cp + UA / (V rho_cp) (T_j - T)

The side reaction has the higher activation energy and is second order, so a hotter reactor converts more A
but loses more B: purity peaks near 86-88 deg C (default config), close to the 92 deg C trip, and the peak
moves with the feed and the catalyst activity. Pressure speeds up the wanted reaction only, at the price of
compression work. The jacket temperature ``T_j`` follows its setpoint with a first-order lag, and so does the
pressure. The *setpoints* themselves move at most ``*_rate_limit_*_per_min`` per minute towards the
commanded targets.

Disturbances: the feed concentration and feed temperature follow seeded Ornstein-Uhlenbeck processes around
levels that jump now and then (step disturbances, a Poisson process); the catalyst activity ``a`` drifts
around 1 (unmeasured). Measurements carry Gaussian noise; the true state drives the process, the KPIs and
the safety check.

Energy per tick (kWh): jacket heating duty / heater efficiency, jacket cooling duty / chiller COP (heating
costs about 4x more per kJ), isothermal compression of the gas consumed plus an inerts purge that grows with
pressure, and a constant base load (agitator, pumps). The trade-off depends on the disturbances: with a rich
or warm feed the reaction heats the reactor, the jacket cools (cheap), and running hotter both converts more
and needs less cooling per kg; with a lean or cold feed the jacket must heat (dear) and the best temperature
is lower. Open loop the unit is touchy: at a fixed jacket temperature the reactor temperature wanders by
+-10 deg C with the feed, which is why a fixed-setpoint operator stays far below the optimum.

`ReactorSim` is the plain core (no gym, plain floats); `ProcessControlEnv` is the Gymnasium wrapper.
Integration uses a few semi-implicit Euler sub-steps per tick (linear terms implicit, reaction rates explicit),
which stays stable even in a runaway.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, model_validator

R_J_PER_MOL_K = 8.314  # gas constant
KELVIN = 273.15
N_OBS = 10

# Observation normalisation: obs[i] = clip((x_i - center_i) / scale_i, -5, 5).
# Indices: 0 reactor T, 1 jacket T, 2 pressure, 3 purity, 4 unreacted A fraction, 5 feed conc, 6 feed T,
# 7 jacket setpoint, 8 pressure setpoint, 9 process power.
OBS_CENTER = (75.0, 75.0, 8.0, 0.85, 0.10, 2.0, 25.0, 75.0, 8.0, 150.0)
OBS_SCALE = (15.0, 15.0, 4.0, 0.10, 0.10, 0.25, 5.0, 15.0, 4.0, 100.0)
OBS_NAMES = (
    "reactor_temp", "jacket_temp", "pressure", "purity", "a_fraction",
    "feed_conc", "feed_temp", "jacket_setpoint", "pressure_setpoint", "power",
)
OBS_LIMIT = 5.0
_OBS_INV_SCALE = tuple(1.0 / x for x in OBS_SCALE)


class ReactorConfig(BaseModel):
    """Reactor, actuators, safety limits, disturbances, sensors, energy and reward of the process unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- actuators: what the controller moves
    jacket_setpoint_min_c: float = Field(20.0, description="Lowest jacket temperature setpoint, deg C.")
    jacket_setpoint_max_c: float = Field(130.0, description="Highest jacket temperature setpoint, deg C.")
    pressure_setpoint_min_bar: float = Field(1.0, gt=0, description="Lowest reactor pressure setpoint, bar(a).")
    pressure_setpoint_max_bar: float = Field(15.0, gt=0, description="Highest reactor pressure setpoint, bar(a).")
    jacket_rate_limit_c_per_min: float = Field(2.0, gt=0, description="Largest jacket setpoint move, deg C per minute.")
    pressure_rate_limit_bar_per_min: float = Field(
        0.5, gt=0, description="Largest pressure setpoint move, bar per minute."
    )
    nominal_jacket_c: float = Field(61.0, description="Fixed-setpoint operation: jacket temperature, deg C.")
    nominal_pressure_bar: float = Field(8.0, gt=0, description="Fixed-setpoint operation: reactor pressure, bar(a).")
    jacket_time_constant_min: float = Field(
        2.0, gt=0, description="Lag of the jacket temperature behind its setpoint, minutes."
    )
    pressure_time_constant_min: float = Field(
        1.0, gt=0, description="Lag of the pressure behind its setpoint, minutes."
    )

    # --- safety limits (true process values)
    temperature_max_c: float = Field(92.0, description="Highest safe reactor temperature, deg C.")
    temperature_min_c: float = Field(35.0, description="Lowest safe reactor temperature (product solidifies), deg C.")
    pressure_max_bar: float = Field(12.0, gt=0, description="Highest safe reactor pressure, bar(a).")

    # --- reactor and kinetics
    volume_l: float = Field(2000.0, gt=0, description="Liquid volume, litres.")
    feed_flow_l_per_min: float = Field(200.0, gt=0, description="Feed (and product) flow, litres per minute.")
    feed_conc_mol_per_l: float = Field(2.0, gt=0, description="Nominal concentration of A in the feed, mol/L.")
    feed_temp_c: float = Field(25.0, description="Nominal feed temperature, deg C.")
    k1_ref_per_min: float = Field(2.0, gt=0, description="Rate constant of A + G -> B at reference T and P, 1/min.")
    k2_ref_l_per_mol_min: float = Field(
        0.0006, gt=0, description="Rate constant of 2 B -> C at reference T, L/(mol min)."
    )
    reference_temp_c: float = Field(80.0, description="Reference temperature of the rate constants, deg C.")
    activation_energy1_kj_per_mol: float = Field(100.0, gt=0, description="Activation energy of A + G -> B, kJ/mol.")
    activation_energy2_kj_per_mol: float = Field(180.0, gt=0, description="Activation energy of 2 B -> C, kJ/mol.")
    reaction_heat1_kj_per_mol: float = Field(130.0, ge=0, description="Heat released per mol of B formed, kJ/mol.")
    reaction_heat2_kj_per_mol: float = Field(40.0, ge=0, description="Heat released per mol of B dimerised, kJ/mol.")
    rho_cp_kj_per_l_k: float = Field(4.0, gt=0, description="Volumetric heat capacity of the liquid, kJ/(L K).")
    ua_kw_per_k: float = Field(14.0, gt=0, description="Jacket heat-transfer coefficient times area, kW/K.")
    pressure_ref_bar: float = Field(10.0, gt=0, description="Pressure at which k1_ref holds, bar(a).")
    pressure_half_bar: float = Field(5.0, gt=0, description="Pressure at which gas uptake is half saturated, bar.")
    molar_mass_b_kg_per_mol: float = Field(0.1, gt=0, description="Molar mass of the product B, kg/mol.")

    # --- disturbances
    feed_conc_std_mol_per_l: float = Field(
        0.13, ge=0, description="Stationary std of the feed concentration drift, mol/L."
    )
    feed_conc_tau_min: float = Field(
        60.0, gt=0, description="Correlation time of the feed concentration drift, minutes."
    )
    feed_temp_std_c: float = Field(4.0, ge=0, description="Stationary std of the feed temperature drift, deg C.")
    feed_temp_tau_min: float = Field(90.0, gt=0, description="Correlation time of the feed temperature drift, minutes.")
    activity_std: float = Field(
        0.04, ge=0, le=0.3, description="Stationary std of the unmeasured catalyst activity (mean 1)."
    )
    activity_tau_min: float = Field(
        240.0, gt=0, description="Correlation time of the catalyst activity drift, minutes."
    )
    step_rate_per_h: float = Field(0.25, ge=0, description="Mean number of step disturbances per hour.")
    step_conc_std_mol_per_l: float = Field(
        0.18, ge=0, description="Std of a step in the feed concentration level, mol/L."
    )
    step_temp_std_c: float = Field(4.0, ge=0, description="Std of a step in the feed temperature level, deg C.")
    step_conc_level_max_fraction: float = Field(
        0.25, ge=0, le=0.9, description="Steps keep the feed concentration level within nominal +- this share."
    )
    step_temp_level_max_c: float = Field(
        15.0, ge=0, description="Steps keep the feed temperature level within nominal +- this, deg C."
    )

    # --- sensors
    temp_noise_c: float = Field(0.3, ge=0, description="Std of temperature measurement noise, deg C.")
    pressure_noise_bar: float = Field(0.05, ge=0, description="Std of pressure measurement noise, bar.")
    purity_noise: float = Field(
        0.004, ge=0, description="Std of the purity / composition analyser noise, mole fraction."
    )
    feed_conc_noise_mol_per_l: float = Field(
        0.02, ge=0, description="Std of feed concentration measurement noise, mol/L."
    )

    # --- energy
    heater_efficiency: float = Field(0.9, gt=0, le=1, description="Jacket heating: heat delivered per unit energy.")
    chiller_cop: float = Field(4.0, gt=0, description="Jacket cooling: heat removed per unit energy.")
    compressor_efficiency: float = Field(0.7, gt=0, le=1, description="Isothermal efficiency of the gas compressor.")
    purge_mol_per_min_bar: float = Field(
        15.0, ge=0, description="Inerts purge: gas vented per minute per bar of pressure, mol/(min bar)."
    )
    gas_supply_bar: float = Field(1.0, gt=0, description="Gas supply (compressor suction) pressure, bar(a).")
    base_load_kw: float = Field(20.0, ge=0, description="Agitator, pumps and instruments, kW.")

    # --- reward weights
    product_value_per_kg: float = Field(0.05, ge=0, description="Value of one kg of on-spec B (reward units).")
    purity_spec: float = Field(0.95, gt=0, le=1, description="Purity at and above which B sells at full value.")
    off_spec_discount: float = Field(5.0, ge=0, description="Share of value lost per unit of purity below purity_spec.")
    energy_price_per_kwh: float = Field(0.3, ge=0, description="Cost of one kWh (reward units).")
    violation_penalty: float = Field(10.0, ge=0, description="Penalty per tick outside the safe limits (reward units).")

    @model_validator(mode="after")
    def _check(self) -> ReactorConfig:
        pairs = [
            ("jacket_setpoint_min_c", "jacket_setpoint_max_c"),
            ("pressure_setpoint_min_bar", "pressure_setpoint_max_bar"),
            ("temperature_min_c", "temperature_max_c"),
        ]
        for lo, hi in pairs:
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} {getattr(self, lo)} must be below {hi} {getattr(self, hi)}")
        if not self.jacket_setpoint_min_c <= self.nominal_jacket_c <= self.jacket_setpoint_max_c:
            raise ValueError(
                f"nominal_jacket_c {self.nominal_jacket_c} must lie in the jacket setpoint range "
                f"[{self.jacket_setpoint_min_c}, {self.jacket_setpoint_max_c}]"
            )
        if not self.pressure_setpoint_min_bar <= self.nominal_pressure_bar <= self.pressure_setpoint_max_bar:
            raise ValueError(
                f"nominal_pressure_bar {self.nominal_pressure_bar} must lie in the pressure setpoint range "
                f"[{self.pressure_setpoint_min_bar}, {self.pressure_setpoint_max_bar}]"
            )
        if self.nominal_pressure_bar > self.pressure_max_bar:
            raise ValueError(
                f"nominal_pressure_bar {self.nominal_pressure_bar} must not exceed "
                f"pressure_max_bar {self.pressure_max_bar}"
            )
        for name in ("jacket_setpoint_min_c", "temperature_min_c", "feed_temp_c", "reference_temp_c"):
            if getattr(self, name) <= -KELVIN:
                raise ValueError(f"{name} {getattr(self, name)} must be above absolute zero (-273.15 deg C)")
        return self

    @property
    def residence_time_min(self) -> float:
        return self.volume_l / self.feed_flow_l_per_min


def action_to_setpoints(config: ReactorConfig, action) -> tuple[float, float]:
    """A normalised action in [-1, 1]^2 (clipped) -> absolute (jacket deg C, pressure bar), linearly."""
    a0, a1 = float(action[0]), float(action[1])
    a0 = -1.0 if a0 < -1.0 else (1.0 if a0 > 1.0 else a0)
    a1 = -1.0 if a1 < -1.0 else (1.0 if a1 > 1.0 else a1)
    lo_t, hi_t = config.jacket_setpoint_min_c, config.jacket_setpoint_max_c
    lo_p, hi_p = config.pressure_setpoint_min_bar, config.pressure_setpoint_max_bar
    return lo_t + 0.5 * (a0 + 1.0) * (hi_t - lo_t), lo_p + 0.5 * (a1 + 1.0) * (hi_p - lo_p)


def setpoints_to_action(config: ReactorConfig, jacket_c: float, pressure_bar: float) -> np.ndarray:
    """Absolute setpoints (deg C, bar) -> the normalised action in [-1, 1]^2 that asks for them, float32."""
    t_lo, t_hi = config.jacket_setpoint_min_c, config.jacket_setpoint_max_c
    p_lo, p_hi = config.pressure_setpoint_min_bar, config.pressure_setpoint_max_bar
    a0 = 2.0 * (jacket_c - t_lo) / (t_hi - t_lo) - 1.0
    a1 = 2.0 * (pressure_bar - p_lo) / (p_hi - p_lo) - 1.0
    return np.clip(np.array([a0, a1], dtype=np.float32), -1.0, 1.0)


class _Normals:
    """Standard normals pre-drawn in batches from one seeded generator, handed out a few per tick."""

    __slots__ = ("rng", "n", "values", "i")

    def __init__(self, rng: np.random.Generator, n: int = 16384):
        self.rng, self.n = rng, n
        self.values = rng.standard_normal(n).tolist()
        self.i = 0

    def take(self, k: int) -> list[float]:
        i = self.i
        if i + k > self.n:  # the unused tail is dropped; still deterministic
            self.values, i = self.rng.standard_normal(self.n).tolist(), 0
        self.i = i + k
        return self.values[i:i + k]


class ReactorSim:
    """Core reactor simulator (no gym). One `step` per control tick of ``dt_s`` seconds.

    Parameters
    ----------
    config : ReactorConfig
    rng : np.random.Generator
        The only source of randomness (disturbances, sensor noise, initial feed state).
    dt_s : float
        Length of one control tick, seconds.

    Attributes
    ----------
    c_a, c_b, c_c : float
        True outlet concentrations, mol/L.
    temp_c, jacket_temp_c, pressure_bar : float
        True reactor temperature, jacket temperature (deg C) and pressure (bar).
    feed_conc, feed_temp_c, activity : float
        True disturbance state.
    jacket_setpoint_c, pressure_setpoint_bar : float
        Setpoints in force after clipping and rate limiting.
    meas_temp_c, meas_jacket_c, meas_pressure_bar, meas_purity, meas_a_fraction, meas_feed_conc, meas_feed_temp_c
        Noisy measurements taken at the end of the last tick.
    last_purity, last_yield, last_production, last_energy_kwh, last_reward : float
        Product purity (mole fraction of B in the product collected this tick), yield (B out / A fed),
        production (kg of B), process energy (kWh) and reward of the last tick.
    violation : bool
        Whether a true process variable left its safe limits during the last tick.
    """

    def __init__(self, config: ReactorConfig, rng: np.random.Generator, dt_s: float = 60.0):
        assert dt_s > 0, "dt_s must be positive"
        self.config, self.rng, self.dt_s = config, rng, float(dt_s)
        self.dt_min = self.dt_s / 60.0
        # Semi-implicit Euler sub-steps of at most 15 s: in the operating region within 0.4 deg C and 0.5 %
        # purity of a 240-sub-step reference; ignition or extinction transients may shift by a few minutes.
        self.n_sub = max(1, math.ceil(self.dt_s / 15.0))
        self._precompute()
        self._steady = self._steady_state()
        self.reset()

    # ------------------------------------------------------------------ setup
    def _precompute(self) -> None:
        """Plain-float constants of the hot path (the config is frozen)."""
        cfg, dt = self.config, self.dt_min
        h = dt / self.n_sub  # minutes per sub-step
        self._h = h
        self._inv_tau = 1.0 / cfg.residence_time_min
        self._ua_kj_min = cfg.ua_kw_per_k * 60.0  # kJ/(min K)
        self._ua_c = self._ua_kj_min / (cfg.volume_l * cfg.rho_cp_kj_per_l_k)  # 1/min
        self._e1 = cfg.activation_energy1_kj_per_mol * 1000.0 / R_J_PER_MOL_K  # K
        self._e2 = cfg.activation_energy2_kj_per_mol * 1000.0 / R_J_PER_MOL_K  # K
        self._inv_tref = 1.0 / (cfg.reference_temp_c + KELVIN)
        self._dh1 = cfg.reaction_heat1_kj_per_mol / cfg.rho_cp_kj_per_l_k  # K L/mol
        self._dh2 = cfg.reaction_heat2_kj_per_mol / cfg.rho_cp_kj_per_l_k  # K L/mol
        self._p_norm = (cfg.pressure_ref_bar + cfg.pressure_half_bar) / cfg.pressure_ref_bar
        self._aj = 1.0 - math.exp(-h / cfg.jacket_time_constant_min)
        self._ap = 1.0 - math.exp(-h / cfg.pressure_time_constant_min)
        self._move_t = cfg.jacket_rate_limit_c_per_min * dt  # deg C per tick
        self._move_p = cfg.pressure_rate_limit_bar_per_min * dt  # bar per tick
        p_step = 1.0 - math.exp(-cfg.step_rate_per_h * dt / 60.0)  # probability of a step per tick
        self._step_threshold = NormalDist().inv_cdf(1.0 - p_step) if p_step > 0.0 else math.inf
        # exact OU discretisation: x' = mean + (x - mean) * a + std * sqrt(1 - a^2) * z
        self._ou = []
        for tau_min, std in ((cfg.feed_conc_tau_min, cfg.feed_conc_std_mol_per_l),
                             (cfg.feed_temp_tau_min, cfg.feed_temp_std_c),
                             (cfg.activity_tau_min, cfg.activity_std)):
            a = math.exp(-dt / tau_min)
            self._ou.append((a, std * math.sqrt(1.0 - a * a)))
        self._compress_kwh_per_mol_ln = (R_J_PER_MOL_K * 298.15 / 1000.0 / 3600.0 / cfg.compressor_efficiency)
        self._base_kwh = cfg.base_load_kw * dt / 60.0

    def _steady_state(self) -> tuple[float, ...]:
        """State after 10 residence times at nominal setpoints and nominal feed (no noise), cached per config."""
        cfg = self.config
        f = cfg.feed_conc_mol_per_l
        self.c_a, self.c_b, self.c_c = 0.1 * f, 0.85 * f, 0.02 * f
        self.temp_c = cfg.nominal_jacket_c + 10.0
        self.jacket_temp_c = cfg.nominal_jacket_c
        self.pressure_bar = cfg.nominal_pressure_bar
        self.feed_conc, self.feed_temp_c, self.activity = f, cfg.feed_temp_c, 1.0
        n_ticks = math.ceil(10.0 * cfg.residence_time_min / self.dt_min) + 1
        for _ in range(n_ticks):
            self._integrate(cfg.nominal_jacket_c, cfg.nominal_pressure_bar)
        return self.c_a, self.c_b, self.c_c, self.temp_c, self.jacket_temp_c, self.pressure_bar

    def reset(self, rng: np.random.Generator | None = None) -> None:
        """Start at the nominal steady state with the feed drawn from its stationary distribution.

        Parameters
        ----------
        rng : np.random.Generator | None
            Replace the generator (the gym wrapper passes its freshly seeded ``np_random``).
        """
        cfg = self.config
        if rng is not None:
            self.rng = rng
        self._draws = _Normals(self.rng)
        z = self._draws.take(3)
        self.c_a, self.c_b, self.c_c, self.temp_c, self.jacket_temp_c, self.pressure_bar = self._steady
        self.jacket_setpoint_c, self.pressure_setpoint_bar = cfg.nominal_jacket_c, cfg.nominal_pressure_bar
        self.conc_level = cfg.feed_conc_mol_per_l  # current level of the feed concentration drift, mol/L
        self.temp_level_c = cfg.feed_temp_c  # current level of the feed temperature drift, deg C
        self.feed_conc = max(0.0, self.conc_level + cfg.feed_conc_std_mol_per_l * z[0])
        self.feed_temp_c = self.temp_level_c + cfg.feed_temp_std_c * z[1]
        self.activity = max(0.1, 1.0 + cfg.activity_std * z[2])
        self.activity_level = 1.0  # what the catalyst drifts around; a scripted upset moves it (`set_catalyst`)
        self.time_min = 0.0
        self.n_ticks = 0
        total = self.c_a + self.c_b + self.c_c
        self.last_purity = self.c_b / total if total > 0 else 0.0
        self.last_yield = self.c_b / cfg.feed_conc_mol_per_l
        self.last_production = self.last_energy_kwh = self.last_reward = 0.0
        self.violation = False
        # KPI accumulators
        self.purity_sum = self.yield_sum = 0.0
        self.production_total_kg = self.energy_total_kwh = self.heating_total_kwh = 0.0
        self.cooling_total_kwh = self.compression_total_kwh = self.reward_total = 0.0
        self.constraint_violations = 0
        self.temp_max_seen_c = self.temp_min_seen_c = self.temp_c
        self.pressure_max_seen_bar = self.pressure_bar
        self._measure(self._draws.take(7))

    # ---------------------------------------------------------------- control
    def action_to_setpoints(self, action: np.ndarray) -> tuple[float, float]:
        """Map a normalised action in [-1, 1]^2 linearly onto the jacket and pressure setpoint ranges."""
        return action_to_setpoints(self.config, action)

    def setpoints_to_action(self, temperature_setpoint_c: float, pressure_setpoint_bar: float) -> np.ndarray:
        """Inverse of `action_to_setpoints`, clipped to [-1, 1], float32."""
        return setpoints_to_action(self.config, temperature_setpoint_c, pressure_setpoint_bar)

    def step(self, temperature_setpoint_c: float, pressure_setpoint_bar: float) -> None:
        """One tick: move the setpoints towards the targets (clipped, rate limited), then simulate ``dt_s``.

        Parameters
        ----------
        temperature_setpoint_c : float
            Target jacket temperature, deg C (absolute).
        pressure_setpoint_bar : float
            Target reactor pressure, bar(a) (absolute).
        """
        cfg = self.config
        # 13 normals per tick: step trigger, 2 step sizes, 3 drifts, 7 sensors
        z = self._draws.take(13)
        # setpoints: clip the target to its range, then move at most rate * dt towards it
        lo, hi = cfg.jacket_setpoint_min_c, cfg.jacket_setpoint_max_c
        target = float(temperature_setpoint_c)
        target = lo if target < lo else (hi if target > hi else target)
        delta, move = target - self.jacket_setpoint_c, self._move_t
        self.jacket_setpoint_c += -move if delta < -move else (move if delta > move else delta)
        lo, hi = cfg.pressure_setpoint_min_bar, cfg.pressure_setpoint_max_bar
        target = float(pressure_setpoint_bar)
        target = lo if target < lo else (hi if target > hi else target)
        delta, move = target - self.pressure_setpoint_bar, self._move_p
        self.pressure_setpoint_bar += -move if delta < -move else (move if delta > move else delta)

        # disturbances: OU drifts around levels that jump as a Poisson process (step disturbances)
        if z[0] > self._step_threshold:  # P(z > threshold) = probability of a step this tick
            f0, lim = cfg.feed_conc_mol_per_l, cfg.step_conc_level_max_fraction * cfg.feed_conc_mol_per_l
            self.conc_level = min(max(self.conc_level + cfg.step_conc_std_mol_per_l * z[1], f0 - lim), f0 + lim)
            t0, lim = cfg.feed_temp_c, cfg.step_temp_level_max_c
            self.temp_level_c = min(max(self.temp_level_c + cfg.step_temp_std_c * z[2], t0 - lim), t0 + lim)
        (a_c, s_c), (a_t, s_t), (a_a, s_a) = self._ou
        conc = self.conc_level + (self.feed_conc - self.conc_level) * a_c + s_c * z[3]
        self.feed_conc = conc if conc > 0.0 else 0.0
        self.feed_temp_c = self.temp_level_c + (self.feed_temp_c - self.temp_level_c) * a_t + s_t * z[4]
        level = self.activity_level
        act = level + (self.activity - level) * a_a + s_a * z[5]
        self.activity = act if act > 0.1 else 0.1

        heat_kj, gas_mol, b_out, total_out, a_in, viol = self._integrate(
            self.jacket_setpoint_c, self.pressure_setpoint_bar
        )

        # energy this tick, kWh
        heating_kwh = heat_kj / 3600.0 / cfg.heater_efficiency if heat_kj > 0.0 else 0.0
        cooling_kwh = -heat_kj / 3600.0 / cfg.chiller_cop if heat_kj < 0.0 else 0.0
        ratio = self.pressure_bar / cfg.gas_supply_bar
        compression_kwh = gas_mol * self._compress_kwh_per_mol_ln * math.log(ratio) if ratio > 1.0 else 0.0
        energy_kwh = heating_kwh + cooling_kwh + compression_kwh + self._base_kwh

        purity = b_out / total_out if total_out > 0.0 else 0.0
        yld = (b_out / a_in if b_out < a_in else 1.0) if a_in > 0.0 else 0.0
        production_kg = b_out * cfg.molar_mass_b_kg_per_mol
        shortfall = cfg.purity_spec - purity
        quality = 1.0 - cfg.off_spec_discount * shortfall if shortfall > 0.0 else 1.0
        if quality < 0.0:
            quality = 0.0
        reward = (cfg.product_value_per_kg * production_kg * quality - cfg.energy_price_per_kwh * energy_kwh
                  - cfg.violation_penalty * viol)

        self.last_purity, self.last_yield, self.last_production = purity, yld, production_kg
        self.last_energy_kwh, self.last_reward, self.violation = energy_kwh, reward, viol
        self.time_min += self.dt_min
        self.n_ticks += 1
        self.purity_sum += purity
        self.yield_sum += yld
        self.production_total_kg += production_kg
        self.energy_total_kwh += energy_kwh
        self.heating_total_kwh += heating_kwh
        self.cooling_total_kwh += cooling_kwh
        self.compression_total_kwh += compression_kwh
        self.reward_total += reward
        self.constraint_violations += viol
        if self.temp_c > self.temp_max_seen_c:
            self.temp_max_seen_c = self.temp_c
        if self.temp_c < self.temp_min_seen_c:
            self.temp_min_seen_c = self.temp_c
        if self.pressure_bar > self.pressure_max_seen_bar:
            self.pressure_max_seen_bar = self.pressure_bar
        self._measure(z[6:])

    def set_catalyst(self, activity: float) -> None:
        """A step in the catalyst's activity (poisoning, or a fresh charge): it jumps to ``activity`` and
        drifts around it from now on. Unmeasured, like the drift."""
        self.activity = self.activity_level = max(0.1, float(activity))

    def _integrate(self, jacket_sp_c: float, pressure_sp_bar: float) -> tuple[float, float, float, float, float, bool]:
        """Advance the true state by one tick (``n_sub`` semi-implicit Euler sub-steps).

        Returns
        -------
        tuple
            Jacket heat into the reactor (kJ), gas compressed (mol), B out (mol), all solutes out (mol),
            A fed (mol), and whether a true variable left its safe limits at any sub-step.
        """
        cfg = self.config
        h, inv_tau, ua_c, ua_kj_min = self._h, self._inv_tau, self._ua_c, self._ua_kj_min
        e1, e2, inv_tref, dh1, dh2 = self._e1, self._e2, self._inv_tref, self._dh1, self._dh2
        aj, ap = self._aj, self._ap
        q, vol, purge, p_half = cfg.feed_flow_l_per_min, cfg.volume_l, cfg.purge_mol_per_min_bar, cfg.pressure_half_bar
        k1_ref = cfg.k1_ref_per_min * self.activity * self._p_norm
        k2_ref = cfg.k2_ref_l_per_mol_min
        c_af, t_f = self.feed_conc, self.feed_temp_c
        ca, cb, cc, t, tj, p = self.c_a, self.c_b, self.c_c, self.temp_c, self.jacket_temp_c, self.pressure_bar
        t_hi, t_lo, p_hi = cfg.temperature_max_c, cfg.temperature_min_c, cfg.pressure_max_bar
        heat = gas = b_out = tot_out = 0.0
        viol = False
        for _ in range(self.n_sub):
            tj += (jacket_sp_c - tj) * aj
            p += (pressure_sp_bar - p) * ap
            x = 1.0 / (t + KELVIN) - inv_tref
            k1 = k1_ref * math.exp(-e1 * x) * p / (p + p_half)
            k2 = k2_ref * math.exp(-e2 * x)
            # linear terms implicit, so a runaway cannot make the scheme blow up
            ca = (ca + h * inv_tau * c_af) / (1.0 + h * (inv_tau + k1))
            r1 = k1 * ca
            cb = (cb + h * r1) / (1.0 + h * (inv_tau + k2 * cb))
            r2 = k2 * cb * cb
            cc = (cc + h * 0.5 * r2) / (1.0 + h * inv_tau)
            t = (t + h * (inv_tau * t_f + ua_c * tj + dh1 * r1 + dh2 * r2)) / (1.0 + h * (inv_tau + ua_c))
            heat += ua_kj_min * (tj - t) * h
            gas += (r1 * vol + purge * p) * h
            b_out += q * cb * h
            tot_out += q * (ca + cb + cc) * h
            if t > t_hi or t < t_lo or p > p_hi:
                viol = True
        self.c_a, self.c_b, self.c_c, self.temp_c, self.jacket_temp_c, self.pressure_bar = ca, cb, cc, t, tj, p
        return heat, gas, b_out, tot_out, q * c_af * self.dt_min, viol

    def _measure(self, z: list[float]) -> None:
        """Noisy measurements of the current state from 7 standard normals."""
        cfg = self.config
        self.meas_temp_c = self.temp_c + cfg.temp_noise_c * z[0]
        self.meas_jacket_c = self.jacket_temp_c + cfg.temp_noise_c * z[1]
        self.meas_pressure_bar = self.pressure_bar + cfg.pressure_noise_bar * z[2]
        total = self.c_a + self.c_b + self.c_c
        purity = self.last_purity + cfg.purity_noise * z[3]
        self.meas_purity = 0.0 if purity < 0.0 else (1.0 if purity > 1.0 else purity)
        a_frac = (self.c_a / total if total > 0.0 else 0.0) + cfg.purity_noise * z[4]
        self.meas_a_fraction = 0.0 if a_frac < 0.0 else (1.0 if a_frac > 1.0 else a_frac)
        self.meas_feed_conc = self.feed_conc + cfg.feed_conc_noise_mol_per_l * z[5]
        self.meas_feed_temp_c = self.feed_temp_c + cfg.temp_noise_c * z[6]

    # ------------------------------------------------------------ observation
    def observation(self) -> np.ndarray:
        """The `ProcessControlEnv` observation: measured values and setpoints, normalised and clipped, float32."""
        power_kw = self.last_energy_kwh * 60.0 / self.dt_min if self.n_ticks else self.config.base_load_kw
        raw = (
            self.meas_temp_c, self.meas_jacket_c, self.meas_pressure_bar, self.meas_purity, self.meas_a_fraction,
            self.meas_feed_conc, self.meas_feed_temp_c, self.jacket_setpoint_c, self.pressure_setpoint_bar, power_kw,
        )
        lim = OBS_LIMIT
        obs = [(x - c) * inv for x, c, inv in zip(raw, OBS_CENTER, _OBS_INV_SCALE)]
        return np.array([lim if v > lim else (-lim if v < -lim else v) for v in obs], dtype=np.float32)

    # ------------------------------------------------------------------- KPIs
    def kpis(self) -> dict[str, float]:
        """KPIs since reset.

        ``purity_mean`` and ``yield_mean`` average the ticks; ``energy_per_unit_kwh`` is process energy per kg of
        B; ``constraint_violations`` counts ticks with a true variable outside its safe limits at any sub-step;
        the temperature and pressure extremes are taken at tick ends.
        """
        n = max(self.n_ticks, 1)
        return {
            "purity_mean": self.purity_sum / n,
            "yield_mean": self.yield_sum / n,
            "production_total_kg": self.production_total_kg,
            "energy_total_kwh": self.energy_total_kwh,
            "energy_per_unit_kwh": (
                self.energy_total_kwh / self.production_total_kg if self.production_total_kg > 0 else 0.0
            ),
            "heating_total_kwh": self.heating_total_kwh,
            "cooling_total_kwh": self.cooling_total_kwh,
            "compression_total_kwh": self.compression_total_kwh,
            "constraint_violations": float(self.constraint_violations),
            "reward_total": self.reward_total,
            "reactor_temp_max_c": self.temp_max_seen_c if self.n_ticks else self.temp_c,
            "reactor_temp_min_c": self.temp_min_seen_c if self.n_ticks else self.temp_c,
            "pressure_max_bar": self.pressure_max_seen_bar if self.n_ticks else self.pressure_bar,
            "ticks": float(self.n_ticks),
        }


class ProcessControlEnv(gym.Env):
    """Hold a jacketed, pressurised CSTR at high product purity and low energy, inside its safe limits.

    See the module docstring for the process model. One step is one control tick of ``dt_s`` seconds.

    Action space
    ------------
    ``Box(-1, 1, (2,), float32)``: target setpoints, normalised linearly over their ranges
    (-1 = minimum, +1 = maximum). The setpoints in force then move towards the targets at most
    ``jacket_rate_limit_c_per_min`` / ``pressure_rate_limit_bar_per_min`` per minute.

    | index | target                      | range (default config)  |
    |-------|-----------------------------|-------------------------|
    | 0     | jacket temperature setpoint | 20 .. 130 deg C         |
    | 1     | reactor pressure setpoint   | 1 .. 15 bar(a)          |

    The setpoint ranges are wider than the safe limits on purpose: the safety layer, not the actuator,
    keeps the unit safe.

    Observation space
    -----------------
    ``Box(-5, 5, (10,), float32)``: what an operator sees, measured with noise, each normalised as
    ``clip((x - center) / scale, -5, 5)``.

    | index | measurement                               | center | scale | unit     |
    |-------|-------------------------------------------|--------|-------|----------|
    | 0     | reactor temperature                       | 75     | 15    | deg C    |
    | 1     | jacket temperature                        | 75     | 15    | deg C    |
    | 2     | reactor pressure                          | 8      | 4     | bar(a)   |
    | 3     | product purity of the last tick (analyser)| 0.85   | 0.10  | fraction |
    | 4     | unreacted A fraction in the outlet        | 0.10   | 0.10  | fraction |
    | 5     | feed concentration of A                   | 2.0    | 0.25  | mol/L    |
    | 6     | feed temperature                          | 25     | 5     | deg C    |
    | 7     | jacket setpoint in force                  | 75     | 15    | deg C    |
    | 8     | pressure setpoint in force                | 8      | 4     | bar(a)   |
    | 9     | process power over the last tick          | 150    | 100   | kW       |

    Reward
    ------
    Per tick, in reward units (default weights in `ReactorConfig`)::

        product_value_per_kg * production_kg * quality
        - energy_price_per_kwh * energy_kwh
        - violation_penalty * violation
        quality = max(0, 1 - off_spec_discount * max(0, purity_spec - purity))

    With the defaults, fixed nominal setpoints earn about 0.6 per tick and the tuned PID baseline about 1.3.

    Starting state
    --------------
    The nominal steady state (nominal setpoints, nominal feed); the feed concentration, feed temperature and
    catalyst activity are drawn from their stationary distributions.

    Episode end
    -----------
    No termination (a violation is penalised, not fatal); truncation after ``episode_minutes``.

    Info and KPIs
    -------------
    ``info`` carries the tick's ``purity``, ``yield``, ``production_kg``, ``energy_kwh``, ``violation``,
    ``reactor_temp_c``, ``pressure_bar``. ``env.sim.kpis()`` holds the episode KPIs: ``purity_mean``,
    ``yield_mean``, ``production_total_kg``, ``energy_total_kwh``, ``energy_per_unit_kwh`` (process energy
    per kg of B), ``constraint_violations`` (ticks with a true process variable outside its safe limits) and
    more.

    Version history
    ---------------
    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: ReactorConfig | None = None, dt_s: float = 60.0, episode_minutes: float = 480.0):
        super().__init__()
        assert episode_minutes > 0, "episode_minutes must be positive"
        self.config = config or ReactorConfig()
        self.dt_s = float(dt_s)
        self.max_steps = max(1, round(episode_minutes * 60.0 / self.dt_s))
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=(N_OBS,), dtype=np.float32)
        self.sim = ReactorSim(self.config, self.np_random, self.dt_s)
        self.n_steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.reset(self.np_random)
        self.n_steps = 0
        return self.sim.observation(), {}

    def step(self, action):
        sim = self.sim
        sim.step(*sim.action_to_setpoints(action))
        self.n_steps += 1
        info = {
            "purity": sim.last_purity,
            "yield": sim.last_yield,
            "production_kg": sim.last_production,
            "energy_kwh": sim.last_energy_kwh,
            "violation": sim.violation,
            "reactor_temp_c": sim.temp_c,
            "pressure_bar": sim.pressure_bar,
        }
        return sim.observation(), sim.last_reward, False, self.n_steps >= self.max_steps, info
