"""The runtime on a real local Ray: actors, restarts, deadlines, a killed run resumed, two nodes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.eventlog import EventLog
from agents.runtime import start_local_run
from environments.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
# No CLIP for the operator's queries (~5 s to load in the inspection actor): these tests ask none;
# tests/test_defect_cnn.py has the agent answer one.
BASE = {"name": "ray-test", "duration_h": 1.0, "fleet": {"road": {"n_nodes": 36, "size_km": 5}, "n_vehicles": 2},
        "agents": {"inspection": {"clip": "off"}}}


def scenario(**over) -> Scenario:
    return Scenario.model_validate({**BASE, **over})


def local_kpis(sc, seed):
    run, board = start_local_run(sc, seed, None)
    while not run.done:
        run.step()
    board.close()
    return run.kpis()


def test_agents_on_ray_give_the_same_run_as_in_process(ray_session, tmp_path):
    from cluster.orchestrator import RayRun

    # equality, not timing, is under test: a deadline miss on a busy machine would split the two runs
    sc = scenario(deadline_ms=5000.0)
    handle = RayRun(sc, 2, tmp_path / "ev.sqlite")
    while not handle.run.done:
        handle.run.step()
    kpis, timing = handle.run.kpis(), handle.run.timing()
    handle.close()
    assert kpis == local_kpis(sc, 2)
    assert timing["posts_acknowledged"] == timing["posts_logged"]


def test_killed_agent_restarts_rebuilds_and_no_post_is_lost(ray_session, tmp_path):
    ray = ray_session
    from cluster.orchestrator import RayRun

    sc = scenario()
    handle = RayRun(sc, 4, tmp_path / "ev.sqlite")
    run = handle.run
    for _ in range(20):
        run.step()
    ray.kill(handle.pool.actors["process"], no_restart=False)  # the PID's actor dies mid-run
    while not run.done:
        run.step()
    kpis, timing = run.kpis(), run.timing()
    handle.close()
    assert timing["agent_restarts"] >= 1
    assert kpis["deadline_misses"] >= 1 and kpis["safe_defaults"] >= 1  # its tick fell back to the safe default
    with EventLog(tmp_path / "ev.sqlite") as log:
        assert log.count() == timing["posts_acknowledged"]  # every acknowledged post is on disk
        turns = [e for e in log.entries() if e.topic == "meta/turns"]
    # after the restart the agent took its turns again, and the run completed
    assert "process" in turns[-1].value and run.plant.tick == sc.n_ticks
    assert kpis["throughput_per_hour"] > 10 and kpis["constraint_violations"] == 0


def test_agents_that_miss_the_deadline_get_safe_defaults(ray_session):
    from cluster.orchestrator import RayRun

    sc = scenario(duration_h=0.25, deadline_ms=0.001)  # nobody can answer in a microsecond
    handle = RayRun(sc, 0, None)
    while not handle.run.done:
        handle.run.step()
    kpis = handle.run.kpis()
    handle.close()
    assert kpis["deadline_misses"] >= sc.n_ticks  # every tick, at least one agent missed
    assert kpis["safe_defaults"] >= sc.n_ticks and kpis["constraint_violations"] == 0


def test_the_voice_agent_hears_on_ray_within_its_own_deadline(ray_session):
    """Hearing a recording takes longer than the scenario's tick deadline; the voice agent's own one holds."""
    from cluster.orchestrator import RayRun

    audio = ROOT / "scenarios" / "audio" / "slow_down.wav"
    sc = scenario(duration_h=0.25, deadline_ms=100.0,
                  events=[{"type": "voice", "at_min": 5, "audio": str(audio)}])
    assert sc.agents.voice.deadline_ms == 2000.0
    handle = RayRun(sc, 0, None)
    while not handle.run.done:
        handle.run.step()
    log, misses = handle.run.operator_log(), handle.run.counters.deadline_misses
    handle.close()
    assert misses["voice"] == 0
    assert log[0]["intent"] == "change_speed" and log[0]["applied"] == {"unit": "pacing",
                                                                         "settings": {"speed_factor": 0.8}}


def _committed_ticks(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("select count(*) from ticks").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_the_whole_run_then_resume_gives_identical_kpis(tmp_path):
    """`shopfloor run` is killed (with its Ray) at a random tick; `--resume` finishes it as an unbroken run would.

    The unbroken run is the in-process one (`--local`): with a deadline no tick misses, it gives the Ray
    run's KPIs (`test_agents_on_ray_give_the_same_run_as_in_process`), and it skips a third Ray start.
    """
    import random

    cli = [sys.executable, "-m", "cluster.cli", "run"]
    sc_file = tmp_path / "sc.yaml"
    # equality, not timing, is under test: a deadline miss on a busy machine would split the runs
    sc_file.write_text("name: crash\nduration_h: 1\nseeds: 1\ndeadline_ms: 5000\n"
                       "fleet: {road: {n_nodes: 36, size_km: 5}, n_vehicles: 2}\nagents: {inspection: {clip: 'off'}}\n")
    full = subprocess.run([*cli, str(sc_file), "--local", "--out", str(tmp_path / "full")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    kill_at = random.Random(os.getpid()).randint(5, 45)
    proc = subprocess.Popen([*cli, str(sc_file), "--out", str(tmp_path / "crash")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "crash" / "events-seed0.sqlite"
    deadline = time.time() + 300
    while _committed_ticks(db) < kill_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and every actor
    proc.wait()
    done = _committed_ticks(db)
    assert 0 < done < 60, done
    resumed = subprocess.run([*cli, "--resume", str(tmp_path / "crash")], cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "full" / "kpis.json").read_text())["per_seed"]
    b = json.loads((tmp_path / "crash" / "kpis.json").read_text())["per_seed"]
    assert a == b
    replay = subprocess.run([sys.executable, "-m", "cluster.cli", "replay", str(tmp_path / "crash")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0 and "yes" in replay.stdout


def test_two_nodes_agent_placed_by_custom_resource(tmp_path):
    """A real two-node Ray cluster on this machine; the scenario pins the dispatch agent to node two."""
    script = textwrap.dedent(f"""
        import ray, sys
        from ray.cluster_utils import Cluster
        sys.path.insert(0, {str(ROOT)!r})
        from environments.scenario import Scenario
        from cluster.orchestrator import RayRun
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        second = cluster.add_node(num_cpus=1, resources={{"fleet_node": 1}})
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        sc = Scenario.model_validate({{"name": "two", "duration_h": 0.5,
            "fleet": {{"road": {{"n_nodes": 36, "size_km": 5}}, "n_vehicles": 2}},
            "agents": {{"dispatch": {{"policy": "savings", "resources": {{"fleet_node": 0.5}}}},
                        "inspection": {{"clip": "off"}}}}}})
        handle = RayRun(sc, 0, None)
        node_of = lambda a: ray.get(a.node_id.remote())
        print("DISPATCH_ON_SECOND", node_of(handle.pool.actors["dispatch"]) == second.node_id)
        print("PROCESS_ON_SECOND", node_of(handle.pool.actors["process"]) == second.node_id)
        while not handle.run.done:
            handle.run.step()
        print("TICKS", handle.run.plant.tick, "MISSES", handle.run.kpis()["deadline_misses"])
        handle.close()
        ray.shutdown()
        cluster.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DISPATCH_ON_SECOND True" in out.stdout
    assert "TICKS 30" in out.stdout


def test_study_compares_configurations_and_reports_a_failed_run(ray_session, tmp_path):
    from cluster.study import run_study

    sc_file = tmp_path / "sc.yaml"
    sc_file.write_text("name: st\nduration_h: 1\nfleet: {road: {n_nodes: 36, size_km: 5}, n_vehicles: 2}\n"
                       "agents: {pacing: {wip_cap: 3}}\n")
    # "rl:missing.zip" is a valid name but no such policy exists: those runs fail, the others must not be lost.
    result = run_study(sc_file, 3, {"agents.pacing.policy": ["push", "conwip"],
                                    "agents.process.policy": ["pid", "rl:missing.zip"]}, workers=2,
                       out_dir=tmp_path / "study")
    assert len(result.configurations) == 4 and len(result.per_run) == 6 and len(result.failures) == 6
    assert all("missing.zip" in f["error"] for f in result.failures)
    push, conwip = result.summaries[0], result.summaries[2]
    assert push["throughput_per_hour"].n == 3
    assert conwip["wip_mean"].mean <= 3 + 1 < push["wip_mean"].mean  # CONWIP holds WIP at its cap (within one)
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert len(saved["configurations"]) == 4 and len(saved["failures"]) == 6
    assert (tmp_path / "study" / "plots" / "wip_mean.png").stat().st_size > 0
    assert result.label(0) == "pacing.policy=push, process.policy=pid"
