"""ProcessControl: the reactor core, its gym wrapper and the classical baselines."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pydantic import ValidationError

from environments.process_control import ProcessControlEnv, ReactorConfig, ReactorSim
from planning.baselines.pid import FixedSetpoints, PIDController
from planning.evaluation import run_episode


def rollout(env: ProcessControlEnv, seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
    return np.array(observations), np.array(rewards), infos


def test_check_env():
    check_env(ProcessControlEnv().unwrapped, skip_render_check=True)


def test_builds_without_arguments_and_truncates_on_time():
    env = ProcessControlEnv(episode_minutes=30.0)
    env.reset(seed=0)
    truncated, n_steps = False, 0
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        n_steps += 1
    assert n_steps == 30


def test_same_seed_same_trajectory_and_different_seed_differs():
    actions = np.random.default_rng(7).uniform(-1, 1, (200, 2)).astype(np.float32)
    obs_a, rew_a, _ = rollout(ProcessControlEnv(), 3, actions)
    obs_b, rew_b, _ = rollout(ProcessControlEnv(), 3, actions)
    obs_c, _, _ = rollout(ProcessControlEnv(), 4, actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a, obs_c)


def test_core_and_wrapper_give_the_same_observations():
    """The Plant drives ReactorSim directly; its observation must match the single env's."""
    config = ReactorConfig()
    env = ProcessControlEnv(config)
    obs, _ = env.reset(seed=11)
    sim = ReactorSim(config, np.random.default_rng(11))
    np.testing.assert_array_equal(obs, sim.observation())
    for action in np.random.default_rng(0).uniform(-1, 1, (50, 2)).astype(np.float32):
        obs, reward, *_ = env.step(action)
        sim.step(*sim.action_to_setpoints(action))
        np.testing.assert_array_equal(obs, sim.observation())
        assert reward == sim.last_reward


def test_rate_limits_respected():
    config = ReactorConfig()
    env = ProcessControlEnv(config)
    env.reset(seed=1)
    sim = env.sim
    max_move_t = config.jacket_rate_limit_c_per_min * sim.dt_min
    max_move_p = config.pressure_rate_limit_bar_per_min * sim.dt_min
    # bang-bang targets force the limits to bind
    actions = np.random.default_rng(2).choice([-1.0, 1.0], size=(300, 2)).astype(np.float32)
    moved_full = 0
    for action in actions:
        t0, p0 = sim.jacket_setpoint_c, sim.pressure_setpoint_bar
        env.step(action)
        dt, dp = abs(sim.jacket_setpoint_c - t0), abs(sim.pressure_setpoint_bar - p0)
        assert dt <= max_move_t + 1e-9 and dp <= max_move_p + 1e-9
        assert config.jacket_setpoint_min_c <= sim.jacket_setpoint_c <= config.jacket_setpoint_max_c
        assert config.pressure_setpoint_min_bar <= sim.pressure_setpoint_bar <= config.pressure_setpoint_max_bar
        moved_full += dt > max_move_t - 1e-9
    assert moved_full > 100  # the limit actually bound


def test_action_mapping_covers_setpoint_ranges():
    config = ReactorConfig()
    sim = ReactorSim(config, np.random.default_rng(0))
    t_lo, t_hi = config.jacket_setpoint_min_c, config.jacket_setpoint_max_c
    p_lo, p_hi = config.pressure_setpoint_min_bar, config.pressure_setpoint_max_bar
    assert sim.action_to_setpoints(np.array([-1.0, -1.0])) == (t_lo, p_lo)
    assert sim.action_to_setpoints(np.array([1.0, 1.0])) == (t_hi, p_hi)
    assert sim.action_to_setpoints(np.array([5.0, -5.0])) == (t_hi, p_lo)  # clipped
    assert sim.action_to_setpoints(np.zeros(2)) == ((t_lo + t_hi) / 2, (p_lo + p_hi) / 2)
    action = sim.setpoints_to_action(config.nominal_jacket_c, config.nominal_pressure_bar)
    t, p = sim.action_to_setpoints(action)
    assert t == pytest.approx(config.nominal_jacket_c, abs=1e-4)
    assert p == pytest.approx(config.nominal_pressure_bar, abs=1e-4)


def test_observations_stay_in_space_even_when_driven_hard():
    env = ProcessControlEnv()
    actions = np.concatenate([
        np.random.default_rng(5).uniform(-1, 1, (150, 2)),
        np.ones((100, 2)),
        -np.ones((150, 2)),
    ]).astype(np.float32)
    observations, rewards, _ = rollout(env, 5, actions)
    assert observations.dtype == np.float32
    assert all(env.observation_space.contains(o) for o in observations)
    assert np.all(np.isfinite(rewards))


@pytest.mark.parametrize("action, limit", [([1.0, 1.0], "high"), ([-1.0, -1.0], "low")])
def test_violations_counted_when_driven_to_the_limits(action, limit):
    config = ReactorConfig()
    env = ProcessControlEnv(config)
    _, rewards, infos = rollout(env, 0, np.tile(np.array(action, dtype=np.float32), (120, 1)))
    kpis = env.sim.kpis()
    n_violations = sum(info["violation"] for info in infos)
    assert n_violations > 0 and kpis["constraint_violations"] == n_violations
    if limit == "high":
        assert kpis["reactor_temp_max_c"] > config.temperature_max_c
        assert kpis["pressure_max_bar"] > config.pressure_max_bar
    else:
        assert kpis["reactor_temp_min_c"] < config.temperature_min_c
    # every violating tick pays the penalty
    assert min(r for r, info in zip(rewards, infos) if info["violation"]) < -config.violation_penalty / 2


def test_kpi_bookkeeping_matches_the_ticks():
    env = ProcessControlEnv()
    actions = np.random.default_rng(9).uniform(-0.5, 0.5, (100, 2)).astype(np.float32)
    _, rewards, infos = rollout(env, 9, actions)
    kpis = env.sim.kpis()
    energy = sum(i["energy_kwh"] for i in infos)
    production = sum(i["production_kg"] for i in infos)
    assert kpis["ticks"] == 100
    assert kpis["energy_total_kwh"] == pytest.approx(energy)
    assert kpis["production_total_kg"] == pytest.approx(production)
    assert kpis["energy_per_unit_kwh"] == pytest.approx(energy / production)
    assert kpis["purity_mean"] == pytest.approx(np.mean([i["purity"] for i in infos]))
    assert kpis["reward_total"] == pytest.approx(rewards.sum())
    assert all(0.0 <= i["purity"] <= 1.0 and 0.0 <= i["yield"] <= 1.0 for i in infos)
    assert kpis["energy_total_kwh"] == pytest.approx(
        kpis["heating_total_kwh"] + kpis["cooling_total_kwh"] + kpis["compression_total_kwh"]
        + env.config.base_load_kw * 100 / 60.0
    )


def test_fixed_setpoints_run_without_violations_at_nominal_conditions():
    env = ProcessControlEnv()
    policy = FixedSetpoints(env.config)
    for seed in range(8):
        kpis = run_episode(env, policy, seed)
        assert kpis["constraint_violations"] == 0
        assert env.sim.jacket_setpoint_c == pytest.approx(env.config.nominal_jacket_c, abs=1e-4)


def test_pid_beats_naive_policies_and_fixed_setpoints():
    env = ProcessControlEnv()
    pid, fixed = PIDController(env.config), FixedSetpoints(env.config)
    seeds = (0, 1, 2)

    class Constant:
        def __init__(self, action):
            self.action = np.asarray(action, dtype=np.float32)

        def reset(self, seed=None):
            pass

        def act(self, observation):
            return self.action

    class Random:
        def reset(self, seed=None):
            self.rng = np.random.default_rng(seed)

        def act(self, observation):
            return self.rng.uniform(-1, 1, 2).astype(np.float32)

    def mean(policy, key):
        return np.mean([run_episode(env, policy, s)[key] for s in seeds])

    pid_reward = mean(pid, "episode_reward")
    assert pid_reward > mean(Constant([-1.0, -1.0]), "episode_reward")
    assert pid_reward > mean(Random(), "episode_reward")
    assert pid_reward > mean(fixed, "episode_reward")
    assert mean(pid, "constraint_violations") == 0
    # the trade-off leaves room for feedback: better purity and less energy per kg than fixed setpoints
    assert mean(pid, "purity_mean") > 1.03 * mean(fixed, "purity_mean")
    assert mean(pid, "energy_per_unit_kwh") < 0.95 * mean(fixed, "energy_per_unit_kwh")


def test_pid_reset_clears_state():
    env = ProcessControlEnv()
    pid = PIDController(env.config)
    first = run_episode(env, pid, 4)
    second = run_episode(env, pid, 4)
    assert first == second


@pytest.mark.parametrize(
    "overrides",
    [
        {"temperature_min_c": 95.0, "temperature_max_c": 92.0},
        {"temperature_min_c": 92.0},
        {"jacket_setpoint_min_c": 130.0},
        {"nominal_jacket_c": 150.0},
        {"nominal_pressure_bar": 14.0},
        {"pressure_setpoint_min_bar": 20.0},
        {"volume_l": -1.0},
        {"not_a_field": 1.0},
    ],
)
def test_bad_config_raises(overrides):
    with pytest.raises(ValidationError):
        ReactorConfig(**overrides)


def test_config_is_frozen():
    config = ReactorConfig()
    with pytest.raises(ValidationError):
        config.temperature_max_c = 200.0
