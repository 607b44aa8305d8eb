"""Run controllers on a unit's simulator over seeds: the shared loop of training validation,
benchmarks and tests.

Every controller, learned or classical, runs behind the same safety shield, as in the plant.
"""

from __future__ import annotations

import gymnasium as gym

from environments.line_pacing import LinePacingEnv
from environments.process_control import ProcessControlEnv
from environments.scenario import Scenario
from planning.domain_randomization import DomainRandomized, Randomization
from planning.safety import SafetyLimits
from planning.shield import SafetyShield


def unit_env(unit: str, scenario: Scenario, randomization: Randomization | None = None,
             episode_minutes: float | None = None, shielded: bool = True) -> gym.Env:
    """The ``process`` or ``pacing`` simulator of the scenario, optionally randomised, behind the shield.

    ``episode_minutes`` defaults to the scenario's duration.
    """
    minutes = episode_minutes if episode_minutes is not None else scenario.duration_h * 60.0
    if unit == "process":
        env: gym.Env = ProcessControlEnv(scenario.process, scenario.tick_s, minutes)
    elif unit == "pacing":
        env = LinePacingEnv(scenario.line, scenario.tick_s, minutes)
    else:
        raise ValueError(f"unit {unit!r}: allowed 'process' or 'pacing'")
    if randomization is not None:
        env = DomainRandomized(env, randomization)
    if shielded:
        env = SafetyShield(env, SafetyLimits.from_scenario(scenario))
    return env


def run_episode(env: gym.Env, controller, seed: int) -> dict[str, float]:
    """One episode of ``controller`` (``reset(seed)``, ``act(obs)``); the simulator's KPIs plus
    ``episode_reward`` and, behind a shield, ``shield_interventions``."""
    obs, _ = env.reset(seed=seed)
    controller.reset(seed)
    total, done, interventions = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, info = env.step(controller.act(obs))
        total += reward
        shield = info.get("shield")
        interventions += bool(shield and (shield["clamped"] or shield["vetoed"]))
        done = terminated or truncated
    out = {**env.unwrapped.sim.kpis(), "episode_reward": total}
    if isinstance(env, SafetyShield):
        out["shield_interventions"] = float(interventions)
    return out


def evaluate(unit: str, scenario: Scenario, controller, seeds, episode_minutes: float | None = None) -> list[dict]:
    """KPIs of ``controller`` per seed on the scenario's shielded, unrandomised ``unit`` simulator."""
    env = unit_env(unit, scenario, None, episode_minutes)
    return [run_episode(env, controller, s) for s in seeds]
