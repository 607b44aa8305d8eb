"""LinePacing: Gymnasium conformance, determinism, books, physics of the line, and the classical pacers."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from environments.line_pacing import LineConfig, LinePacingEnv, LineSim, StationConfig
from planning.baselines.pacing import ConwipRelease, PushRelease


def rollout(env, policy, seed):
    obs, _ = env.reset(seed=seed)
    total, trajectory = 0.0, [obs]
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += reward
        trajectory.append(obs)
        if terminated or truncated:
            return total, np.array(trajectory), env.sim.kpis()


def test_check_env_passes():
    check_env(LinePacingEnv().unwrapped, skip_render_check=True)


def test_gymnasium_make_registered_id():
    import gymnasium

    import environments  # noqa: F401

    env = gymnasium.make("shopfloor/LinePacing-v0")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_same_seed_same_trajectory_and_different_seed_differs():
    env = LinePacingEnv(episode_minutes=120)
    policy = PushRelease(env.config)
    r1, t1, k1 = rollout(env, policy, seed=3)
    r2, t2, k2 = rollout(env, policy, seed=3)
    r3, t3, _ = rollout(env, policy, seed=4)
    assert r1 == r2 and np.array_equal(t1, t2) and k1 == k2
    assert not np.array_equal(t1, t3)


def test_books_balance_at_every_tick():
    sim = LineSim(LineConfig(rework_fraction=0.7, base_defect_hazard=0.2), np.random.default_rng(1))
    rng = np.random.default_rng(2)
    for _ in range(600):
        sim.step(rng.uniform(0, 120), rng.uniform(0.5, 1.5, size=4))
        in_line = sum(sim.buffer_levels()) + sum(sim.stations_holding()) + sim.rework_queue_length()
        assert sim.wip == in_line
        assert sim.released == sim.shipped + sim.scrapped + sim.wip
        assert all(level <= s.buffer_capacity for level, s in zip(sim.buffer_levels(), sim.config.stations))
    assert sim.reworked > 0 and sim.scrapped > 0  # both paths were exercised


def test_external_inspection_holds_parts_until_verdicts():
    sim = LineSim(LineConfig(base_defect_hazard=0.5), np.random.default_rng(0), external_inspection=True)
    for _ in range(30):
        sim.step(60, [1.0] * 4)
    waiting = list(sim.awaiting_inspection)
    assert waiting and sim.shipped == 0
    assert sim.released == sim.shipped + sim.scrapped + sim.wip
    sim.resolve_inspection([p[3] != 0 for p in waiting[:2]])  # a perfect inspector on the first two
    assert len(sim.awaiting_inspection) == len(waiting) - 2
    assert sim.escapes == 0 and sim.false_alarms == 0
    assert sim.released == sim.shipped + sim.scrapped + sim.wip


def test_throughput_matches_a_deterministic_line_without_failures():
    # One station, no breakdowns, near-deterministic 1-minute processing, releases faster than capacity:
    # the line must ship ~60 parts per hour.
    cfg = LineConfig(stations=[StationConfig(mean_process_min=1.0, process_cv=0.01, mttr_h=0.0)],
                     base_defect_hazard=0.0, speed_defect_gain=0.0, purity_defect_gain=0.0, false_alarm_rate=0.0)
    sim = LineSim(cfg, np.random.default_rng(0))
    for _ in range(600):
        sim.step(90, [1.0])
    assert sim.kpis()["throughput_per_hour"] == pytest.approx(60.0, rel=0.01)
    assert sim.kpis()["scrap_rate"] == 0.0


def test_breakdowns_cost_availability_and_scripted_breakdown_stops_a_station():
    no_failures = LineConfig(stations=[StationConfig(mttr_h=0.0)] * 3)
    failures = LineConfig(stations=[StationConfig(mtbf_h=1.0, mttr_h=0.5)] * 3)
    out = {}
    for name, cfg in (("none", no_failures), ("often", failures)):
        sim = LineSim(cfg, np.random.default_rng(0))
        for _ in range(480):
            sim.step(60, [1.0] * 3)
        out[name] = sim.kpis()
    assert out["none"]["availability"] == 1.0
    assert out["often"]["availability"] < 0.8
    assert out["often"]["throughput_per_hour"] < 0.8 * out["none"]["throughput_per_hour"]

    sim = LineSim(no_failures, np.random.default_rng(0))
    for _ in range(30):
        sim.step(60, [1.0] * 3)
    shipped = sim.shipped
    sim.force_breakdown(2, 60.0)
    for _ in range(30):
        sim.step(60, [1.0] * 3)
    assert sim.stations_down()[2]
    assert sim.shipped <= shipped + 1  # at most the part in service was already done


def test_speed_raises_defects():
    kpis = {}
    for speed in (1.0, 1.4):
        sim = LineSim(LineConfig(detection_rate=1.0, false_alarm_rate=0.0, rework_fraction=0.0),
                      np.random.default_rng(0))
        for _ in range(1200):
            sim.step(90, [speed] * 4)
        kpis[speed] = sim.kpis()
    assert kpis[1.4]["scrap_rate"] > 1.5 * kpis[1.0]["scrap_rate"]


def test_low_purity_raises_defects():
    scrap = {}
    for purity in (0.99, 0.85):
        sim = LineSim(LineConfig(rework_fraction=0.0), np.random.default_rng(0))
        sim.purity = purity
        for _ in range(1200):
            sim.step(60, [1.0] * 4)
        scrap[purity] = sim.kpis()["scrap_rate"]
    assert scrap[0.85] > 2 * scrap[0.99]


def test_conwip_holds_wip_at_its_cap_and_matches_push_throughput_with_less_wip():
    env = LinePacingEnv()
    push, conwip = [], []
    for seed in range(4):
        push.append(rollout(env, PushRelease(env.config), seed)[2])
        conwip.append(rollout(env, ConwipRelease(env.config, wip_cap=8), seed)[2])
    mean = lambda runs, k: float(np.mean([r[k] for r in runs]))  # noqa: E731
    assert mean(conwip, "wip_mean") < 0.85 * mean(push, "wip_mean")
    assert mean(conwip, "wip_mean") <= 8.0 + 1e-9
    assert mean(conwip, "throughput_per_hour") > 0.95 * mean(push, "throughput_per_hour")


def test_conwip_holds_wip_within_one_part_of_its_cap():
    env = LinePacingEnv(LineConfig(rework_fraction=0.0))
    policy = ConwipRelease(env.config, wip_cap=7)
    obs, _ = env.reset(seed=0)
    peak = 0
    for _ in range(480):
        obs, *_ = env.step(policy.act(obs))
        peak = max(peak, env.sim.wip)
    assert peak in (7, 8)


def test_config_rejects_inverted_speed_limits():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="speed_min"):
        LineConfig(speed_min=1.5, speed_max=1.0)
