"""Safety layer and arbitration: no action outside the limits ever leaves them (property tests)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.arbitration import Request, apply_operator_command, arbitrate, validate_operator_command
from agents.safety import (SafetyLimits, check_dispatch, check_pacing, check_process, pacing_ok,
                           process_setpoints_ok)
from environments.errors import ShopfloorInputError
from environments.process_control import OBS_CENTER, OBS_SCALE
from environments.scenario import Scenario

SCENARIO = Scenario.model_validate({
    "name": "tight", "safety": {"jacket_setpoint_max_c": 90.0, "pressure_setpoint_max_bar": 9.0,
                                "speed_max": 1.2, "release_max_per_h": 70.0}})
LIMITS = SafetyLimits.from_scenario(SCENARIO)
PROC, LINE = SCENARIO.process, SCENARIO.line

wild = st.floats(allow_nan=True, allow_infinity=True, width=32)
normal_obs = st.lists(st.floats(-5, 5, width=32), min_size=10, max_size=10)


def random_actions(rng, n, width):
    """Actions well beyond [-1, 1], with some NaN and inf mixed in."""
    actions = rng.normal(0, 3, size=(n, width)).astype(np.float32)
    actions[rng.random((n, width)) < 0.01] = np.nan
    actions[rng.random((n, width)) < 0.01] = np.inf
    return actions


def test_10000_random_actions_per_unit_never_leave_the_limits():
    rng = np.random.default_rng(0)
    for action, obs in zip(random_actions(rng, 10_000, 2), rng.uniform(-5, 5, (10_000, 10)).astype(np.float32)):
        assert process_setpoints_ok(check_process(action, obs, LIMITS, PROC).action, LIMITS, PROC), action
    for action in random_actions(rng, 10_000, LINE.n_stations + 1):
        assert pacing_ok(check_pacing(action, LIMITS, LINE).action, LIMITS, LINE), action


@settings(max_examples=400, deadline=None, database=None)
@given(action=st.lists(st.floats(-50, 50, width=32) | wild, min_size=2, max_size=2), obs=normal_obs)
def test_no_process_action_outside_the_limits(action, obs):
    verdict = check_process(np.array(action, dtype=np.float32), np.array(obs, dtype=np.float32), LIMITS, PROC)
    assert process_setpoints_ok(verdict.action, LIMITS, PROC), (action, verdict)
    assert verdict.action.dtype == np.float32 and verdict.action.shape == (2,)


@settings(max_examples=400, deadline=None, database=None)
@given(action=st.lists(st.floats(-50, 50, width=32) | wild, min_size=5, max_size=5))
def test_no_pacing_action_outside_the_limits(action):
    verdict = check_pacing(np.array(action, dtype=np.float32), LIMITS, LINE)
    assert pacing_ok(verdict.action, LIMITS, LINE), (action, verdict)


def test_wrong_shapes_are_vetoed_not_crashing():
    obs = np.zeros(10, np.float32)
    assert check_process(np.zeros(3), obs, LIMITS, PROC).vetoed
    assert check_pacing(np.zeros(2), LIMITS, LINE).vetoed
    assert check_dispatch(np.zeros(7), np.ones(4 * 17, bool), 16).vetoed


def test_hot_reactor_may_not_be_heated_further():
    hot = np.zeros(10, np.float32)
    hot[0] = (LIMITS.reactor_temperature_c[1] - 1.0 - OBS_CENTER[0]) / OBS_SCALE[0]  # 1 C under its limit
    hot[7] = (70.0 - OBS_CENTER[7]) / OBS_SCALE[7]  # jacket setpoint now 70 C
    verdict = check_process(np.array([1.0, 0.0], np.float32), hot, LIMITS, PROC)
    assert verdict.vetoed and "may not rise" in verdict.reasons[-1]
    from environments.process_control import action_to_setpoints

    assert action_to_setpoints(PROC, verdict.action)[0] == pytest.approx(70.0, abs=0.01)
    # cooling is allowed
    assert not check_process(np.array([-0.5, 0.0], np.float32), hot, LIMITS, PROC).vetoed


@settings(max_examples=300, deadline=None, database=None)
@given(action=st.lists(st.integers(-3, 20), min_size=4, max_size=4),
       mask_bits=st.lists(st.booleans(), min_size=4 * 17, max_size=4 * 17))
def test_dispatch_only_masked_and_unique_assignments_pass(action, mask_bits):
    mask = np.array(mask_bits).reshape(4, 17)
    mask[:, 0] = True
    verdict = check_dispatch(np.array(action), mask.reshape(-1), 16)
    chosen = [s for s in verdict.action.tolist() if s]
    assert len(chosen) == len(set(chosen))
    for v, slot in enumerate(verdict.action.tolist()):
        assert 0 <= slot <= 16 and mask[v, slot]


def test_arbitration_order_and_deterministic_ties():
    reqs = [Request("pacing", "controller", "pacing-agent", "p"),
            Request("pacing", "operator", "voice", {"release_per_h": 0}),
            Request("process", "controller", "b", 1), Request("process", "controller", "a", 2),
            Request("dispatch", "safety", "safety", 0), Request("dispatch", "operator", "voice", {"hold": True})]
    winners, conflicts = arbitrate(reqs)
    assert winners["pacing"].kind == "operator"
    assert winners["process"].author == "a"  # tie: first author
    assert winners["dispatch"].kind == "safety"
    assert {c.actuator for c in conflicts} == {"pacing", "process", "dispatch"}
    # the same requests in another order give the same outcome
    assert arbitrate(list(reversed(reqs)))[0] == winners


def test_operator_command_overrides_only_the_settings_it_names():
    from environments.line_pacing import pacing_action_to_controls
    from environments.line_pacing import controls_to_pacing_action

    proposal = controls_to_pacing_action(50.0, [1.1] * LINE.n_stations, LINE)
    stopped = apply_operator_command("pacing", {"release_per_h": 0}, proposal, PROC, LINE)
    rate, speeds = pacing_action_to_controls(stopped, LINE)
    assert rate == pytest.approx(0.0, abs=1e-3) and speeds == pytest.approx([1.1] * LINE.n_stations, abs=1e-3)


@pytest.mark.parametrize("actuator,settings,needle", [
    ("reactor", {"x": 1}, "no such actuator"),
    ("pacing", {"warp": 9}, "unknown setting"),
    ("pacing", {"release_per_h": "fast"}, "a number"),
    ("dispatch", {"hold": 3}, "true or false"),
    ("process", {}, "mapping of settings"),
])
def test_bad_operator_commands_are_rejected_with_what_is_allowed(actuator, settings, needle):
    with pytest.raises(ShopfloorInputError, match=needle):
        validate_operator_command(actuator, settings)
