"""Safety layer and arbitration: no action outside the limits ever leaves them (property tests)."""

import numpy as np

from environments.process_control import setpoints_to_action
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.arbitration import Request, apply_operator_command, arbitrate, validate_operator_command
from planning.safety import (SafetyLimits, check_dispatch, check_pacing, check_process, pacing_ok,
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


def _process_obs(temp_c: float, jacket_sp_c: float = 70.0, pressure_bar: float = 6.0) -> np.ndarray:
    obs = np.zeros(10, np.float32)
    for i, value in ((0, temp_c), (7, jacket_sp_c), (2, pressure_bar), (8, pressure_bar)):
        obs[i] = (value - OBS_CENTER[i]) / OBS_SCALE[i]
    return obs


def test_hot_reactor_is_driven_back():
    from environments.process_control import action_to_setpoints

    hot = _process_obs(LIMITS.reactor_temperature_c[1] - 1.0)  # 1 C under its limit, jacket at 70 C
    verdict = check_process(np.array([1.0, 0.0], np.float32), hot, LIMITS, PROC)
    assert verdict.vetoed and "held at or below" in verdict.reasons[-1]
    jacket, pressure = action_to_setpoints(PROC, verdict.action)
    assert jacket <= 70.0 - LIMITS.recovery_step_c + 0.01  # cooler than it was, not merely held
    assert pressure <= 6.0 - LIMITS.recovery_pressure_cut_bar + 0.01  # the reaction's heat slows
    # cooling harder than the guard asks is the controller's own business
    assert not check_process(setpoints_to_action(PROC, 40.0, 3.0), hot, LIMITS, PROC).vetoed
    # far from the edge, nothing is touched
    assert not check_process(np.array([0.3, 0.0], np.float32), _process_obs(75.0), LIMITS, PROC).vetoed


def test_cold_reactor_is_driven_back_and_trends_count():
    from environments.process_control import action_to_setpoints

    cold = _process_obs(LIMITS.reactor_temperature_c[0] + 1.0)
    verdict = check_process(np.array([-1.0, -1.0], np.float32), cold, LIMITS, PROC)
    jacket, pressure = action_to_setpoints(PROC, verdict.action)
    assert verdict.vetoed and jacket >= 70.0 + LIMITS.recovery_step_c - 0.01 and pressure >= 7.0 - 0.01
    # 80 C now but climbing 3 C a tick: the guard acts before the reactor gets near its limit
    t_hi = LIMITS.reactor_temperature_c[1]
    climbing = check_process(np.array([1.0, 0.0], np.float32), _process_obs(t_hi - 12.0), LIMITS, PROC,
                             previous_observation=_process_obs(t_hi - 15.0))
    steady = check_process(np.array([1.0, 0.0], np.float32), _process_obs(t_hi - 12.0), LIMITS, PROC,
                           previous_observation=_process_obs(t_hi - 12.0))
    assert climbing.vetoed and not steady.vetoed


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
