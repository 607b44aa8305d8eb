"""The whole plant: PettingZoo conformance, determinism, books, and the couplings between units."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from agents.policies import make_controllers
from environments.errors import ShopfloorInputError
from environments.plant import ShopfloorPlant
from environments.scenario import Scenario


def small(**overrides) -> Scenario:
    data = {"name": "small", "duration_h": 1.0, "tick_s": 60.0,
            "fleet": {"road": {"n_nodes": 36, "size_km": 5}, "n_vehicles": 2}}
    data.update(overrides)
    return Scenario.model_validate(data)


def run(plant: ShopfloorPlant, seed: int):
    obs, _ = plant.reset(seed=seed)
    controllers = make_controllers(plant)
    steps = []
    while plant.agents:
        actions = {a: controllers[a].act(obs[a]) for a in plant.agents}
        obs, rewards, _, _, infos = plant.step(actions)
        steps.append((rewards, obs["pacing"].copy(), obs["inspection"]["images"].copy()))
    return steps, plant.kpis()


def test_parallel_api_test_passes():
    parallel_api_test(ShopfloorPlant(small(duration_h=0.5)), num_cycles=40)


def test_observations_are_in_the_single_env_spaces():
    plant = ShopfloorPlant(small())
    obs, _ = plant.reset(seed=0)
    for agent in plant.agents:
        assert plant.observation_space(agent).contains(obs[agent]), agent
        assert plant.action_space(agent).contains(plant.action_space(agent).sample())


def test_same_seed_same_run():
    a_steps, a_kpis = run(ShopfloorPlant(small()), seed=5)
    b_steps, b_kpis = run(ShopfloorPlant(small()), seed=5)
    assert a_kpis == b_kpis
    for (ra, pa, ia), (rb, pb, ib) in zip(a_steps, b_steps):
        assert ra == rb and np.array_equal(pa, pb) and np.array_equal(ia, ib)
    _, c_kpis = run(ShopfloorPlant(small()), seed=6)
    assert c_kpis != a_kpis


def test_books_and_couplings_hold():
    plant = ShopfloorPlant(small(duration_h=2.0, coupling={"parts_per_order": 5}))
    _, kpis = run(plant, seed=1)
    line = plant.line
    assert line.released == line.shipped + line.scrapped + line.wip
    assert line.released > 50 and line.shipped_good > 50
    # every 5 good parts shipped made one order
    assert plant.orders_created == line.shipped_good // 5
    assert kpis["orders_delivered"] > 0 and kpis["distance_km"] > 0
    assert 0.0 < kpis["purity_mean"] <= 1.0
    assert kpis["energy_per_unit_kwh"] > 0


def test_inspection_images_carry_the_true_defect_label():
    plant = ShopfloorPlant(small(line={"base_defect_hazard": 0.8}))
    obs, _ = plant.reset(seed=2)
    labels_seen = []
    for _ in range(30):
        n = obs["inspection"]["n_parts"]
        actions = {"process": np.zeros(2, np.float32), "pacing": np.zeros(5, np.float32),
                   "dispatch": np.zeros_like(plant.action_space("dispatch").sample()),
                   "inspection": np.ones(plant.max_parts_per_tick, np.int8)}
        obs, rewards, _, _, infos = plant.step(actions)
        labels_seen += infos["inspection"]["true_defects"]
        assert len(infos["inspection"]["true_defects"]) == n
        if n:  # rejecting everything is right for defective parts and a false alarm for good ones
            expected = sum(1.0 if d else -1.0 for d in infos["inspection"]["true_defects"])
            assert rewards["inspection"] == pytest.approx(expected)
    assert any(labels_seen) and 0 in labels_seen or len(set(labels_seen)) > 1


def test_low_purity_from_the_process_raises_line_defects():
    # A cold reactor makes poor product; the line's defect hazard follows the purity it is fed.
    scrap = {}
    for jacket in (80.0, 20.0):
        sc = small(duration_h=3.0, agents={"process": {"policy": "fixed"}, "inspection": {"policy": "threshold"}},
                   process={"nominal_jacket_c": jacket, "temperature_min_c": 0.0})
        plant = ShopfloorPlant(sc)
        _, kpis = run(plant, seed=3)
        scrap[jacket] = (kpis["purity_mean"], plant.line.inspected_defective / max(1, plant.line.released))
    assert scrap[20.0][0] < scrap[80.0][0]
    assert scrap[20.0][1] > scrap[80.0][1]


def test_scripted_breakdown_and_rush_order_happen():
    sc = small(events=[{"type": "breakdown", "at_min": 10, "station": "welding", "duration_min": 30},
                       {"type": "rush_order", "at_min": 5, "demand_units": 7, "window_min": 45}])
    plant = ShopfloorPlant(sc)
    obs, _ = plant.reset(seed=0)
    controllers = make_controllers(plant)
    down_seen = False
    while plant.agents:
        obs, *_ = plant.step({a: controllers[a].act(obs[a]) for a in plant.agents})
        down_seen |= plant.line.stations_down()[2]
    assert down_seen
    assert plant.orders_created >= 1


def test_a_commissioned_station_holds_its_false_alarm_target_under_its_own_camera():
    """agents.inspection.commission_false_alarm: the CNN's and the baseline's thresholds are set on known-good
    parts rendered under the station's shifted camera; other good parts under that camera then raise few alarms."""
    from agents.policies import COMMISSIONING_SEED, make_controller
    from perception.datasets import render_dataset

    station = {"inspection": {"image_size": 96, "image_shift": 0.5}}
    later = render_dataset(200, 96, COMMISSIONING_SEED + 1, "shifted:all@0.5", defect="good", workers=1).images
    for policy in ("cnn", "threshold"):
        stored = make_controller("inspection", ShopfloorPlant(small(
            agents={"inspection": {"policy": policy}}, **station)))
        commissioned = make_controller("inspection", ShopfloorPlant(small(
            agents={"inspection": {"policy": policy, "commission_false_alarm": 0.02, "commission_parts": 150}},
            **station)))
        alarms = (commissioned.p_defect(later) >= commissioned.reject_threshold).mean()
        stored_alarms = (stored.p_defect(later) >= stored.reject_threshold).mean()
        # measured on these 200 parts: cnn 0.005 against 0.33 at its stored threshold; the threshold baseline
        # (calibrated under nominal light) 0.025 against 1.0
        assert alarms <= 0.06 and stored_alarms >= 0.15, (policy, alarms, stored_alarms)
        with pytest.raises(ShopfloorInputError, match=r"50 good parts cannot set a 1.0% .*allowed: at least 100"):
            commissioned.calibrate(later[:50], false_alarm_target=0.01)
        with pytest.raises(ShopfloorInputError, match=r"false_alarm_target=1.5 is invalid; allowed: 0 < target < 1"):
            commissioned.calibrate(later, false_alarm_target=1.5)
