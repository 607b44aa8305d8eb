"""Scenario files: the shipped ones validate, and every malformed file gets exit code 2 with one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest

from environments.errors import ShopfloorInputError
from environments.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))


def shopfloor(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenarios_validate(path):
    sc = load_scenario(path)
    assert sc.name and sc.n_ticks > 0
    # the resolved form round-trips to the same scenario
    import yaml

    assert Scenario.model_validate(yaml.safe_load(sc.resolved_yaml())) == sc


def test_at_least_the_three_named_scenarios_ship():
    assert {"smart_factory", "logistics_hub", "inspection_station"} <= {p.stem for p in SHIPPED}


def test_minimal_file_gets_defaults(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text("name: tiny\n")
    sc = load_scenario(f)
    assert sc.agents.pacing.policy == "conwip" and sc.line.n_stations >= 1


def test_overrides_apply_dotted_keys(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text("name: tiny\n")
    sc = load_scenario(f, {"agents.pacing.policy": "push", "line.stations": [{"name": "only"}]})
    assert sc.agents.pacing.policy == "push" and [s.name for s in sc.line.stations] == ["only"]


# (file text, substrings the one-line error must contain)
MALFORMED = {
    "missing_field": ("description: no name here\n", ["name", "required field is missing"]),
    "wrong_type": ("name: x\nduration_h: long\n", ["duration_h", "'long'", "valid number"]),
    "negative_capacity": ("name: x\nline:\n  stations:\n    - {name: a}\n    - {name: b, buffer_capacity: -3}\n",
                          ["line.stations[1].buffer_capacity", "-3", "greater than or equal to 1"]),
    "negative_mtbf_path": ("name: x\nline:\n  stations: [{name: a}, {name: b}, {name: c, mtbf_h: -2}]\n",
                           ["line.stations[2].mtbf_h", "-2", "greater than 0"]),
    "unknown_policy": ("name: x\nagents:\n  pacing: {policy: magic}\n",
                       ["agents.pacing.policy", "'magic'", "allowed: push, conwip, rl, rl:<path>"]),
    "unknown_key": ("name: x\nline:\n  speed_mn: 0.5\n", ["line.speed_mn", "unknown key", "speed_min"]),
    "overfull_batch": ("name: x\nagents:\n  dispatch: {policy: contract_net:gnn, batch_min_fill: 1.5}\n",
                       ["agents.dispatch.batch_min_fill", "1.5", "less than or equal to 1"]),
    "unknown_top_key": ("name: x\nflet: {}\n", ["flet", "unknown key", "fleet"]),
    "empty_file": ("", ["empty", "mapping"]),
    "not_yaml": ("name: [unclosed\n  - x: y\n", ["not valid YAML", "line"]),
    "not_a_mapping": ("- just\n- a list\n", ["must be a YAML mapping", "list"]),
    "unknown_event_type": ("name: x\nevents:\n  - {type: earthquake, at_min: 3}\n",
                           ["events[0]", "earthquake", "breakdown, rush_order, voice"]),
    "breakdown_unknown_station": ("name: x\nevents:\n  - {type: breakdown, at_min: 3, station: nowhere, "
                                  "duration_min: 5}\n", ["events[0].station", "'nowhere'", "allowed:"]),
    "event_after_end": ("name: x\nduration_h: 1\nevents:\n  - {type: rush_order, at_min: 500, demand_units: 5}\n",
                        ["events[0].at_min", "500", "after the end"]),
    "inverted_speed_limits": ("name: x\nline: {speed_min: 1.5, speed_max: 1.0}\n",
                              ["line", "speed_min 1.5 must not exceed speed_max 1.0"]),
    "zero_seeds": ("name: x\nseeds: 0\n", ["seeds", "0", "greater than or equal to 1"]),
    "duplicate_station_names": ("name: x\nline:\n  stations: [{name: a}, {name: a}]\n", ["unique"]),
    "bad_window": ("name: x\ncoupling: {order_window_min: [100, 50]}\n", ["coupling", "opens < closes"]),
    "safety_below_start": ("name: x\nsafety: {jacket_setpoint_max_c: 40}\n",
                           ["safety.jacket_setpoint_max_c 40", "nominal jacket setpoint", "allowed"]),
    "unknown_part_type": ("name: x\ninspection: {part_types: [gear, sprocket]}\n",
                          ["inspection.part_types", "sprocket", "allowed: gear, plate"]),
    "bad_purity_reference": ("name: x\nline: {purity_reference: 1.7}\n", ["line.purity_reference", "1.7"]),
    "two_reject_thresholds": ("name: x\nagents:\n  inspection: {policy: cnn, reject_threshold: 0.5, "
                              "commission_false_alarm: 0.01}\n",
                              ["agents.inspection", "both set the reject threshold", "allowed: one of them"]),
    "too_few_commissioning_parts": ("name: x\nagents:\n  inspection: {commission_false_alarm: 0.001, "
                                    "commission_parts: 500}\n", ["agents.inspection", "allowed: at least 1000"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scenario_exit_2_one_line_no_traceback(case, tmp_path):
    text, expected = MALFORMED[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    with pytest.raises(ShopfloorInputError) as info:
        load_scenario(f)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(f))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("case", ["negative_capacity", "unknown_policy", "not_yaml", "empty_file"])
def test_cli_bad_scenario_exits_2_with_one_line(case, tmp_path):
    text, expected = MALFORMED[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    out = shopfloor("run", str(f), "--out", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr
    assert expected[0] in lines[0]
    assert not (tmp_path / "run").exists()


def test_cli_missing_file_and_binary_file_and_bad_set(tmp_path):
    out = shopfloor("run", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2 and "no such scenario file" in out.stderr
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    out = shopfloor("run", str(binary))
    assert out.returncode == 2 and "UTF-8" in out.stderr and "Traceback" not in out.stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: ok\n")
    out = shopfloor("run", str(ok), "--set", "agents.pacing.policy")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
    out = shopfloor("run", str(ok), "--set", "agents.pacing.policy=teleport")
    assert out.returncode == 2 and "agents.pacing.policy" in out.stderr and "teleport" in out.stderr
