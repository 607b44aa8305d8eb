"""The tick protocol in one process: log, exact resume and replay, safety, operator commands."""

import pytest

from agents.eventlog import EventLog
from agents.runtime import replay_kpis, start_local_run
from environments.scenario import Scenario

BASE = {"name": "rt", "duration_h": 1.5, "fleet": {"road": {"n_nodes": 36, "size_km": 5}, "n_vehicles": 2}}


def scenario(**over) -> Scenario:
    return Scenario.model_validate({**BASE, **over})


def finish(run):
    while not run.done:
        run.step()
    return run.kpis()


def test_every_acknowledged_post_is_on_the_log_one_transaction_per_tick(tmp_path):
    sc = scenario()
    run, board = start_local_run(sc, 3, tmp_path / "ev.sqlite")
    kpis = finish(run)
    timing = run.timing()
    board.close()
    with EventLog(tmp_path / "ev.sqlite") as log:
        assert log.count() == timing["posts_acknowledged"] == timing["posts_logged"] > 0
        assert log.last_committed_tick() == sc.n_ticks - 1
    assert kpis["throughput_per_hour"] > 10 and kpis["deadline_misses"] == 0


@pytest.mark.parametrize("stop_at", [1, 37])
def test_resume_after_a_crash_gives_identical_kpis(tmp_path, stop_at):
    sc = scenario()
    run, board = start_local_run(sc, 5, tmp_path / "full.sqlite")
    full = finish(run)
    board.close()
    run, board = start_local_run(sc, 5, tmp_path / "crash.sqlite")
    for _ in range(stop_at):
        run.step()
    board.close()  # the process dies here: only committed ticks exist
    run, board = start_local_run(sc, 5, tmp_path / "crash.sqlite", resume=True)
    assert run.plant.tick == stop_at
    resumed = finish(run)
    board.close()
    assert resumed == full
    assert replay_kpis(tmp_path / "full.sqlite") == full
    assert replay_kpis(tmp_path / "crash.sqlite") == full


def test_tight_limits_are_enforced_and_reported(tmp_path):
    # The safety section forbids what the PID and CONWIP ask for: every action is clamped, none passes.
    sc = scenario(safety={"release_max_per_h": 20.0, "jacket_setpoint_max_c": 65.0},
                  agents={"process": {"policy": "pid"}, "pacing": {"policy": "push"}})
    run, board = start_local_run(sc, 0, None)
    kpis = finish(run)
    board.close()
    assert kpis["clamps"] + kpis["vetoes"] > 0
    rates = [t["release_rate_per_h"] for t in run.trace]
    assert max(rates) <= 20.0 + 1e-6
    assert all(t["jacket_setpoint_c"] <= 65.0 + 1e-6 for t in run.trace[1:])


def test_operator_commands_outrank_controllers_and_bad_ones_are_refused():
    sc = scenario(events=[
        {"type": "voice", "at_min": 10, "command": {"unit": "pacing", "settings": {"release_per_h": 0}}},
        {"type": "voice", "at_min": 20, "command": {"unit": "pacing", "settings": {"warp_speed": 9}}},
    ])
    run, board = start_local_run(sc, 1, None)
    kpis = finish(run)
    board.close()
    assert kpis["commands_accepted"] == 1 and kpis["commands_rejected"] == 1
    assert kpis["conflicts"] == 1  # the operator's stop met CONWIP's proposal in the same tick
    after = [t["release_rate_per_h"] for t in run.trace if t["time_min"] > 12]
    assert after and max(after) == 0.0  # the stop stands until the operator says otherwise
    vetoes = board.read(["veto/voice"], 0)
    assert "warp_speed" in vetoes[0].value["reason"] and "allowed" in vetoes[0].value["reason"]


def test_contract_net_dispatch_awards_each_order_once_to_its_lowest_bid(tmp_path):
    sc = scenario(duration_h=2.0, agents={"dispatch": {"policy": "contract_net"}},
                  coupling={"parts_per_order": 5})
    run, board = start_local_run(sc, 2, tmp_path / "cn.sqlite")
    kpis = finish(run)
    entries = board.board.read(["*"], 0, include_expired=True)
    board.close()
    cfps = {e.topic.split("/")[1] for e in entries if e.topic.startswith("cfp/")}
    awards = [e for e in entries if e.topic.startswith("award/")]
    bids: dict = {}
    for e in entries:
        if e.topic.startswith("bid/"):
            _, order, agent = e.topic.split("/")
            assert agent == e.author and agent.startswith("vehicle-")  # vehicles are agents of their own
            bids.setdefault(order, {})[agent] = e.value["cost"]
    assert len(cfps) >= 10 and awards
    assert len({a.topic for a in awards}) == len(awards)  # once per order
    for a in awards:
        order = a.topic.split("/")[1]
        lowest = min(bids[order].items(), key=lambda kv: (kv[1], kv[0]))
        assert a.value["winner"] == lowest[0]
    assert kpis["orders_delivered"] > 0
    assert replay_kpis(tmp_path / "cn.sqlite") == kpis


@pytest.mark.parametrize("planner", ["savings", "gnn"])
def test_planned_routes_are_tenders_the_vehicles_bid_on(tmp_path, planner):
    sc = scenario(duration_h=2.0, agents={"dispatch": {"policy": f"contract_net:{planner}"}},
                  coupling={"parts_per_order": 5})
    run, board = start_local_run(sc, 2, tmp_path / "rt.sqlite")
    kpis = finish(run)
    entries = board.board.read(["*"], 0, include_expired=True)
    board.close()
    calls = {e.topic.split("/")[1]: e for e in entries if e.topic.startswith("cfp/route-")}
    bids: dict = {}
    for e in entries:
        if e.topic.startswith("bid/route-"):
            _, task, agent = e.topic.split("/")
            assert agent == e.author and agent.startswith("vehicle-")
            bids.setdefault(task, {})[agent] = e.value["cost"]
    awards = [e for e in entries if e.topic.startswith("award/route-")]
    assert calls and awards and all(c.value["kind"] == "route" and c.value["payload"]["stops"] for c in calls.values())
    assert len({a.topic for a in awards}) == len(awards)  # a route is awarded once
    won_at: dict = {}
    for a in awards:
        won_at.setdefault(a.tick, []).append(a.value["winner"])
    for a in awards:
        task = a.topic.split("/")[1]
        assert a.tick > calls[task].tick and a.value["cost"] == bids[task][a.value["winner"]]
        # the lowest bid among the vehicles still free when it was awarded (not given another route then)
        others = [c for v, c in bids[task].items() if v not in won_at[a.tick]]
        assert all(a.value["cost"] <= c for c in others)
    assert kpis["orders_delivered"] > 0 and kpis["deadline_misses"] == 0
    assert replay_kpis(tmp_path / "rt.sqlite") == kpis


def test_the_board_and_classical_agents_never_load_torch():
    """Each agent is a Ray actor in its own process, and importing torch costs one ~2 s and ~260 MB: only the
    agents that run a learned model may pay it (measured in benchmarks/RESULTS.md, issue 3)."""
    import subprocess
    import sys
    from pathlib import Path

    script = """
import sys
import cluster.actors  # what every actor process imports: the board's and each agent's
from agents.runtime import build_agent
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario
classical = {"process": {"policy": "pid"}, "pacing": {"policy": "conwip"}, "dispatch": {"policy": "contract_net"},
             "inspection": {"policy": "threshold", "clip": "off"}}
plant = ShopfloorPlant(Scenario.model_validate({**%r, "agents": classical}))
plant.reset(seed=0)
for name in ("process", "pacing", "dispatch", "vehicle-0", "inspection", "voice", "safety"):
    build_agent(name, plant)
print("classical", "torch" in sys.modules)
learned = Scenario.model_validate({**%r, "agents": {**classical, "process": {"policy": "rl"}}})
plant = ShopfloorPlant(learned)
plant.reset(seed=0)
build_agent("process", plant)
print("learned", "torch" in sys.modules)
""" % (BASE, BASE)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-3:-1] == ["classical False", "learned True"], out.stdout
