"""Issue 7: the safety shield, domain randomisation, hyperparameter files, a quick SB3 training run, the
shipped process and pacing policies, the defect negotiation between the two agents, and both agents in a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.blackboard import Blackboard, Post
from agents.controller_agent import ControllerAgent
from agents.defect_negotiation import (
    negotiation_log,
    pacing_negotiation,
    process_negotiation,
)
from agents.runtime import start_local_run
from environments.errors import ShopfloorInputError
from environments.line_pacing import (
    controls_to_pacing_action,
    pacing_action_to_controls,
)
from environments.process_control import (
    OBS_CENTER,
    OBS_SCALE,
    action_to_setpoints,
    setpoints_to_action,
)
from environments.scenario import load_scenario
from planning.baselines.pacing import ConwipRelease
from planning.baselines.pid import PIDController
from planning.domain_randomization import DomainRandomized, Randomization
from planning.evaluation import evaluate, run_episode, unit_env
from planning.rl_controller import SHIPPED_POLICIES, RLController
from planning.safety import SafetyLimits
from planning.train_rl import HELD_OUT_SEEDS, load_hyperparams

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = load_scenario(ROOT / "scenarios" / "smart_factory.yaml")
HARDER = load_scenario(ROOT / "scenarios" / "smart_factory_harder.yaml")


class Constant:
    """A controller that always asks for the same action (here: the extremes of the action space)."""

    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float32)

    def reset(self, seed=None):
        pass

    def act(self, observation):
        return self.action.copy()


class Recorder:
    """Records every action the plant actually receives, below the shield."""

    def __init__(self, env):
        self.env, self.actions = env, []
        self._step = env.step
        env.step = self.step

    def step(self, action):
        self.actions.append(np.asarray(action).copy())
        return self._step(action)


# ------------------------------------------------------------------------------------------------ shield
@pytest.mark.parametrize("unit", ["process", "pacing"])
def test_shield_lets_nothing_outside_the_limits_through(unit):
    env = unit_env(unit, SCENARIO, episode_minutes=120)
    limits, config = env.limits, env.unwrapped.config
    recorder = Recorder(env.env)
    rng = np.random.default_rng(7)
    obs, _ = env.reset(seed=1)
    for _ in range(240):
        obs, *_ = env.step(rng.uniform(-3, 3, env.action_space.shape).astype(np.float32))
    assert env.interventions > 0
    for action in recorder.actions:
        assert env.action_ok(action)
    if unit == "pacing":  # each station's speed moves at most speed_step per tick
        speeds = np.array([pacing_action_to_controls(a, config)[1] for a in recorder.actions])
        assert limits.speed_step is not None
        assert np.abs(np.diff(speeds, axis=0)).max() <= limits.speed_step + 1e-5


def test_shield_keeps_a_reckless_controller_inside_the_temperature_band():
    """Always the hottest jacket and the highest pressure: the unshielded reactor leaves its band, the
    shielded one never does (constraint_violations is 0)."""
    reckless = Constant([1.0, 1.0])
    bare = run_episode(unit_env("process", SCENARIO, shielded=False), reckless, 3)
    shielded = run_episode(unit_env("process", SCENARIO), reckless, 3)
    assert bare["constraint_violations"] > 50
    assert shielded["constraint_violations"] == 0 and shielded["shield_interventions"] > 0


def test_domain_randomisation_is_seeded_and_within_its_ranges():
    r = Randomization(disturbance_scale=(0.5, 2.0))
    env = DomainRandomized(unit_env("process", SCENARIO, shielded=False), r)
    draws = [env.reset(seed=s)[1]["randomization"]["disturbance"] for s in (1, 2, 1)]
    assert draws[0] == draws[2] != draws[1]
    assert all(0.5 <= d <= 2.0 for d in draws)
    assert env.unwrapped.config.step_rate_per_h == pytest.approx(SCENARIO.process.step_rate_per_h * draws[-1])
    line = DomainRandomized(unit_env("pacing", SCENARIO, shielded=False),
                            Randomization(breakdown_rate_scale=(3.0, 3.0), repair_time_scale=(1.0, 1.0)))
    line.reset(seed=0)
    assert [s.mtbf_h for s in line.unwrapped.config.stations] == pytest.approx(
        [s.mtbf_h / 3.0 for s in SCENARIO.line.stations])


def test_hyperparameter_files_load_and_bad_ones_get_one_line_errors(tmp_path):
    for unit in ("process", "pacing"):
        hp = load_hyperparams(unit)
        assert hp.algo == "sac" and hp.algo_kwargs()["policy_kwargs"]["net_arch"]
    bad = tmp_path / "bad.yml"
    bad.write_text("process: {algo: dqn, n_timesteps: 10}\n")
    with pytest.raises(ShopfloorInputError, match="process.algo"):
        load_hyperparams("process", bad)
    bad.write_text("pacing: {algo: sac, n_timesteps: 10}\n")
    with pytest.raises(ShopfloorInputError, match="no 'process' entry"):
        load_hyperparams("process", bad)


# ------------------------------------------------------------------------------------------- training
def _shopfloor(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})


def test_quick_training_writes_a_policy_that_loads_and_acts(tmp_path):
    out = tmp_path / "pacing.zip"
    done = _shopfloor("train", "pacing", "--quick", "--seed", "3", "--out", out, "--tensorboard", tmp_path / "tb")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["algo"] == "sac" and "train pacing --quick" in metrics["command"]
    assert metrics["learning_curve"] and np.isfinite(metrics["best_validation_reward"])
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))  # TensorBoard logged
    controller = RLController.load(out)
    obs, _ = unit_env("pacing", SCENARIO).reset(seed=0)
    assert controller.act(obs).shape == (SCENARIO.line.n_stations + 1,)
    bad = _shopfloor("train", "pacing", "--quick", "--hyperparams", tmp_path / "missing.yml", "--out", out)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "missing.yml" in bad.stderr


def test_a_policy_for_another_line_is_refused(tmp_path):
    five = load_scenario(ROOT / "scenarios" / "smart_factory.yaml")
    space = unit_env("pacing", five).observation_space
    wrong = type(space)(0.0, 4.0, shape=(space.shape[0] + 4,), dtype=np.float32)
    with pytest.raises(ShopfloorInputError, match="retrain it"):
        RLController.load(SHIPPED_POLICIES["pacing"], wrong)
    with pytest.raises(ShopfloorInputError, match="does not exist"):
        RLController.load(tmp_path / "nothing.zip")


# ------------------------------------------------------------------------------------ shipped policies
@pytest.mark.parametrize("unit", ["process", "pacing"])
def test_shipped_policy_is_small_and_says_how_it_was_made(unit):
    path = SHIPPED_POLICIES[unit]
    assert path.stat().st_size <= 2_000_000
    metrics = json.loads(path.with_suffix(".metrics.json").read_text())
    assert metrics["command"].startswith(f"shopfloor train {unit}") and metrics["seed"] == 0
    assert metrics["train_s"] <= 20 * 60


def test_shipped_process_policy_beats_fixed_setpoints_and_pid_on_held_out_seeds():
    seeds = HELD_OUT_SEEDS[:8]  # benchmarks/rl_controllers.py runs all 20
    from planning.baselines.pid import FixedSetpoints

    fixed = evaluate("process", SCENARIO, FixedSetpoints(SCENARIO.process), seeds)
    pid = evaluate("process", SCENARIO, PIDController(SCENARIO.process), seeds)
    sac = evaluate("process", SCENARIO, RLController.load(SHIPPED_POLICIES["process"]), seeds)

    def mean(runs, k):
        return float(np.mean([r[k] for r in runs]))

    assert mean(sac, "purity_mean") >= 1.05 * mean(fixed, "purity_mean")
    assert mean(sac, "energy_per_unit_kwh") <= 0.90 * mean(fixed, "energy_per_unit_kwh")
    assert sum(r["constraint_violations"] for r in sac) == 0
    assert mean(sac, "episode_reward") >= mean(pid, "episode_reward")


def test_shipped_pacing_policy_ships_10_percent_more_than_conwip_at_no_more_wip_on_held_out_seeds():
    """CONWIP with a cap of 12 holds more WIP than the policy does, and ships less by over 10%."""
    seeds = HELD_OUT_SEEDS[:4]
    conwip = evaluate("pacing", SCENARIO, ConwipRelease(SCENARIO.line, 12, SCENARIO.tick_s), seeds)
    sac = evaluate("pacing", SCENARIO, RLController.load(SHIPPED_POLICIES["pacing"]), seeds)

    def mean(runs, k):
        return float(np.mean([r[k] for r in runs]))

    assert mean(sac, "wip_mean") <= mean(conwip, "wip_mean")
    assert mean(sac, "throughput_per_hour") >= 1.10 * mean(conwip, "throughput_per_hour")


# ---------------------------------------------------------------------------------- defect negotiation
def _obs_process(purity: float, pressure: float = 6.0) -> list[float]:
    obs = np.zeros(10)
    obs[3] = (purity - OBS_CENTER[3]) / OBS_SCALE[3]
    obs[2] = obs[8] = (pressure - OBS_CENTER[2]) / OBS_SCALE[2]
    return obs.tolist()


def _obs_pacing(speeds: list[float]) -> list[float]:
    line, n = SCENARIO.line, SCENARIO.line.n_stations
    obs = np.zeros(4 * n + 6)
    obs[3 * n:4 * n] = [(s - line.speed_min) / (line.speed_max - line.speed_min) for s in speeds]
    return obs.tolist()


def _negotiate(purity: float, speeds: list[float], alarm_off_at: int = 8):
    """Both agents on a real blackboard, an alarm raised at tick 0 and cleared at ``alarm_off_at``."""
    sc, board = SCENARIO, Blackboard()
    limits = SafetyLimits.from_scenario(sc)
    agents = {
        "pacing": ControllerAgent("pacing", Constant(controls_to_pacing_action(60.0, speeds, sc.line)), "conwip",
                                  pacing_negotiation(sc.line)),
        "process": ControllerAgent("process", Constant(setpoints_to_action(sc.process, 70.0, 6.0)), "fixed",
                                   process_negotiation(sc.process, sc.line, limits.pressure_setpoint_bar[1])),
    }
    cursors, proposals = {name: 0 for name in agents}, {name: [] for name in agents}
    for tick in range(12):
        if tick in (0, alarm_off_at):
            board.post("inspection", tick, [Post("alarm/defect_rate", "line", {
                "active": tick == 0, "reject_rate": 0.25, "normal_rate": 0.08})])
        board.post("plant", tick, [Post("state/process", "obs", _obs_process(purity)),
                                   Post("state/pacing", "obs", _obs_pacing(speeds))])
        turn = {}
        for name, agent in agents.items():
            inbox = board.read(list(agent.subscribes), cursors[name])
            cursors[name] = board.last_seq
            turn[name] = agent.decide(tick, inbox)
            proposals[name].append(next(p.value for p in turn[name] if p.topic.startswith("proposal/")))
        for name, posts in turn.items():
            board.post(name, tick, posts)
    return negotiation_log(board.read(["cfp/*", "bid/*", "award/*", "done/*"], 0)), proposals


def test_defect_alarm_goes_to_the_cheaper_remedy_and_it_holds_until_the_alarm_clears():
    # fast stations and on-spec purity: only lowering the speed removes a hazard
    log, proposals = _negotiate(purity=0.97, speeds=[1.3] * 4)
    assert len(log) == 1 and set(log[0]["bids"]) == {"pacing"} and log[0]["winner"] == "pacing"
    assert "remedied for" in log[0]["outcome"]
    speeds = [pacing_action_to_controls(a, SCENARIO.line)[1] for a in proposals["pacing"]]
    assert max(speeds[0]) == pytest.approx(1.3, abs=1e-3)  # before the award
    assert max(speeds[5]) <= 1.0 + 1e-6  # remedy in force
    assert max(speeds[-1]) == pytest.approx(1.3, abs=1e-3)  # alarm cleared: the controller's own pace again
    # nominal speeds and an off-spec feed: the process agent corrects its setpoints
    log, proposals = _negotiate(purity=0.90, speeds=[1.0] * 4)
    assert set(log[0]["bids"]) == {"process"} and log[0]["winner"] == "process"
    pressures = [action_to_setpoints(SCENARIO.process, a)[1] for a in proposals["process"]]
    assert pressures[0] == pytest.approx(6.0, abs=1e-3) and pressures[6] == pytest.approx(7.5, abs=1e-3)
    # both can help: the lower loss per hour wins, and the report names both bids
    log, _ = _negotiate(purity=0.90, speeds=[1.3] * 4)
    costs = {unit: bid["cost"] for unit, bid in log[0]["bids"].items()}
    assert set(costs) == {"pacing", "process"} and log[0]["winner"] == min(costs, key=costs.get)
    # nobody can help: the award says so
    log, _ = _negotiate(purity=0.97, speeds=[1.0] * 4)
    assert log[0]["winner"] is None and "no bid" in log[0]["outcome"]


# ------------------------------------------------------------------------------------- agents in a run
def test_learned_agents_run_the_plant_and_negotiate_a_catalyst_upset():
    """The default scenario's agents (the shipped SAC policies) for 4 hours; the catalyst loses most of its
    activity at minute 120, purity and then parts go bad, the inspection agent raises the alarm, and the
    process and pacing agents negotiate. The report's table lists the tender."""
    sc = load_scenario(ROOT / "scenarios" / "smart_factory.yaml", {
        "duration_h": 4, "agents.inspection.clip": "off",
        "events": [{"type": "catalyst_upset", "at_min": 120, "activity": 0.3, "duration_min": 90}]})
    assert sc.agents.process.policy == "rl" and sc.agents.pacing.policy == "rl"
    run, board = start_local_run(sc, sc.seed, None)
    while not run.done:
        run.step()
    kpis, proposals = run.kpis(), board.read(["proposal/process", "proposal/pacing"], 0)
    log = run.negotiation_log()
    purity = [t["purity"] for t in run.trace]
    board.close()
    assert kpis["constraint_violations"] == 0
    assert len(proposals) == 2 * 240  # both learned agents proposed every tick
    assert log, "the catalyst upset raised no defect alarm"
    first = log[0]
    assert 120 <= first["tick"] <= 210 and first["alarm"]["reject_rate"] > first["alarm"]["normal_rate"]
    costs = {unit: bid["cost"] for unit, bid in first["bids"].items()}
    assert costs and first["winner"] == min(costs, key=costs.get)
    assert min(purity[130:200]) < 0.92 < min(purity[30:110])  # the upset, not the start-up, made it
    from cluster.report import negotiation_markdown
    from cluster.run import SeedRun

    lines = negotiation_markdown(SeedRun(sc.seed, kpis, run.trace, {}, [], negotiation_log=log))
    assert lines[0].startswith("## Defect alarms and negotiations") and f"| {first['tick']} |" in lines[4]
