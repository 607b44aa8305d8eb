"""Delivery fleet: road network, FleetSim books and timing, DispatchEnv conformance, dispatch baselines."""

import math

import networkx as nx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pydantic import ValidationError

from environments.dispatch import (
    CLOCK_FEATURES,
    ORDER_FEATURES,
    VEHICLE_FEATURES,
    DispatchEnv,
    FleetConfig,
    FleetSim,
)
from environments.errors import ShopfloorInputError
from environments.road_network import (
    RoadConfig,
    RoadNetwork,
    distance_matrix,
    generate_city,
    load_graphml,
    shortest_path,
    travel_time_matrix,
)
from planning.baselines.dispatchers import NearestNeighbourDispatcher, RandomDispatcher, SavingsDispatcher

SMALL = FleetConfig(road=RoadConfig(n_nodes=49, size_km=6.0, seed=3), n_vehicles=3, max_pending_orders=8)


# ----------------------------------------------------------------------------------------- road network
def test_generated_city_is_connected_and_attributed():
    g = generate_city(90, size_km=8.0, seed=5)
    assert sorted(g.nodes) == list(range(90)) and nx.is_connected(g)
    assert all(0 <= g.nodes[n]["x"] <= 8 and 0 <= g.nodes[n]["y"] <= 8 for n in g)
    classes = {d["road_class"] for _, _, d in g.edges(data=True)}
    assert classes == {"street", "arterial"}
    assert all(d["length_km"] > 0 and d["speed_kmh"] > 0 for _, _, d in g.edges(data=True))
    full_grid_edges = 2 * 90 - 10 - 9  # 10 columns x 9 rows
    assert g.number_of_edges() < full_grid_edges  # some streets were removed
    assert nx.utils.graphs_equal(g, generate_city(90, size_km=8.0, seed=5))


def test_distance_and_time_matrices_match_networkx():
    g = generate_city(36, seed=2)
    nodes = [0, 7, 20, 35]
    d = distance_matrix(g, nodes)
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            assert d[i, j] == pytest.approx(nx.shortest_path_length(g, a, b, weight="length_km"))
    t = travel_time_matrix(g, 40.0, nodes)
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            path = shortest_path(g, a, b)
            assert sum(g.edges[u, v]["length_km"] for u, v in zip(path, path[1:])) == pytest.approx(d[i, j])
            expected = sum(60 * g.edges[u, v]["length_km"] / min(g.edges[u, v]["speed_kmh"], 40.0)
                           for u, v in zip(path, path[1:]))
            assert t[i, j] == pytest.approx(expected)
    # a slower vehicle never arrives earlier
    assert (travel_time_matrix(g, 20.0, nodes) >= t - 1e-9).all()


def test_graphml_round_trip(tmp_path):
    g = generate_city(40, size_km=5.0, seed=1)
    path = tmp_path / "city.graphml"
    nx.write_graphml(g, path)
    h = load_graphml(path)
    assert sorted(h.nodes) == list(range(40)) and h.number_of_edges() == g.number_of_edges()
    for n in g:
        assert h.nodes[n]["x"] == pytest.approx(g.nodes[n]["x"]) and h.nodes[n]["name"] == str(n)
    for u, v, data in g.edges(data=True):
        assert h.edges[u, v]["length_km"] == pytest.approx(data["length_km"])
        assert h.edges[u, v]["speed_kmh"] == data["speed_kmh"]
    np.testing.assert_allclose(RoadNetwork(h).dist_km, RoadNetwork(g).dist_km)
    # the fleet runs on a GraphML map as on a generated one
    cfg = FleetConfig(road=RoadConfig(graphml_path=str(path)), n_vehicles=2)
    sim = FleetSim(cfg, np.random.default_rng(0))
    np.testing.assert_allclose(sim.network.dist_km, RoadNetwork(g).dist_km)
    for _ in range(120):
        sim.step(NearestNeighbourDispatcher(sim).act(sim.observation()))
    assert sim.n_delivered > 0


def test_graphml_in_metres_and_directed_is_accepted(tmp_path):
    g = nx.MultiDiGraph()
    g.add_node("a", x=0.0, y=0.0)
    g.add_node("b", x=1.0, y=0.0)
    g.add_node("c", x=1.0, y=1.0)
    g.add_edge("a", "b", length=1000.0, speed_kph=50.0)
    g.add_edge("b", "a", length=900.0)
    g.add_edge("b", "c", length=1200.0)
    path = tmp_path / "osm.graphml"
    nx.write_graphml(g, path)
    h = load_graphml(path)
    assert not h.is_directed() and h.number_of_edges() == 2
    assert h.edges[0, 1]["length_km"] == pytest.approx(0.9)


def _write(tmp_path, g, name="bad.graphml"):
    path = tmp_path / name
    nx.write_graphml(g, path)
    return path


@pytest.mark.parametrize("problem, match", [
    ("no_x", "has no 'x' attribute"),
    ("no_length", "has no 'length_km' attribute"),
    ("bad_length", "lengths must be > 0"),
    ("disconnected", "2 disconnected parts"),
    ("not_xml", "not a readable GraphML file"),
    ("missing", "no such GraphML file"),
])
def test_bad_graphml_raises_one_line_input_error(tmp_path, problem, match):
    g = nx.Graph()
    g.add_node(0, x=0.0, y=0.0)
    g.add_node(1, x=1.0, y=0.0)
    g.add_node(2, x=2.0, y=0.0)
    g.add_edge(0, 1, length_km=1.0)
    g.add_edge(1, 2, length_km=1.0)
    if problem == "no_x":
        del g.nodes[1]["x"]
    elif problem == "no_length":
        del g.edges[1, 2]["length_km"]
    elif problem == "bad_length":
        g.edges[1, 2]["length_km"] = -1.0
    elif problem == "disconnected":
        g.remove_edge(1, 2)
    path = _write(tmp_path, g)
    if problem == "not_xml":
        path.write_text("<graphml><broken")
    elif problem == "missing":
        path = tmp_path / "absent.graphml"
    with pytest.raises(ShopfloorInputError, match=match) as info:
        load_graphml(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# -------------------------------------------------------------------------------------------- config
def test_config_validation():
    with pytest.raises(ValidationError):
        FleetConfig(capacity_units=0)
    with pytest.raises(ValidationError, match="demand_max_units 30 exceeds the largest vehicle capacity"):
        FleetConfig(demand_max_units=30)
    with pytest.raises(ValidationError, match="n_vehicles 3 does not match the 1 vehicles"):
        FleetConfig(vehicles=[{"capacity_units": 10}], n_vehicles=3)
    with pytest.raises(ValidationError, match="demand_min_units 4 must not exceed"):
        FleetConfig(demand_min_units=4, demand_max_units=3)
    with pytest.raises(ValidationError):
        FleetConfig(unknown_field=1)
    with pytest.raises(ValidationError, match="n_depots 30 is too many"):
        FleetConfig(n_depots=30, road=RoadConfig(n_nodes=40))
    cfg = FleetConfig.model_validate({"vehicles": [{"capacity_units": 8, "speed_kmh": 30}, {}]})
    assert [v.capacity_units for v in cfg.fleet] == [8, 20] and cfg.n_vehicles == 2
    # a fully written-out config (as in a resolved scenario) validates back to itself
    assert FleetConfig.model_validate(cfg.model_dump()) == cfg
    assert FleetConfig.model_validate(FleetConfig().model_dump()) == FleetConfig()


# ---------------------------------------------------------------------------------------------- core
def _single_order_sim(**overrides) -> tuple[FleetSim, int]:
    cfg = SMALL.model_copy(update={"n_vehicles": 1, **overrides})
    sim = FleetSim(FleetConfig.model_validate(cfg.model_dump()), np.random.default_rng(0), dt_s=30.0,
                   generate_orders=False)
    node = max(sim.customer_nodes, key=lambda n: sim.network.dist_km[sim.depot_nodes[0], n])
    return sim, node


def test_single_trip_distance_and_timing_are_exact():
    sim, node = _single_order_sim()
    cfg, depot = sim.config, sim.depot_nodes[0]
    oid = sim.add_order(node, 3, 0.0, 1000.0)
    assert sim.action_masks().tolist()[:3] == [True, True, False]
    sim.step([1])  # assigned; stays at the depot this tick
    assert sim.books() == {"created": 1, "delivered": 0, "pending": 0, "queued": 1, "onboard": 0}
    t_leg = sim.network.time_min(cfg.speed_kmh)[depot, node]
    row = sim.observation()["vehicles"][0]
    assert row[3] == pytest.approx(2 * sim.network.dist_km[depot, node], rel=1e-5)  # route_remaining_km
    assert row[4] == 1 and row[5] == 1 and row[6] == node  # at_depot, n_stops, anchor_node
    assert row[7] == pytest.approx(cfg.load_time_min + 2 * t_leg + cfg.service_time_min, rel=1e-5)
    sim.step([0])  # departs at t = 0.5 min
    expected_delivery = 0.5 + cfg.load_time_min + t_leg + cfg.service_time_min
    while sim.orders[oid].delivered_at != sim.orders[oid].delivered_at:
        sim.step([0])
    assert sim.orders[oid].delivered_at == pytest.approx(expected_delivery)
    while sim.vehicles[0].activity != 0:
        sim.step([0])
    k = sim.kpis()
    assert k["distance_km"] == pytest.approx(2 * sim.network.dist_km[depot, node])
    busy = cfg.load_time_min + 2 * t_leg + cfg.service_time_min
    assert k["vehicle_utilization"] == pytest.approx(busy / sim.now)
    assert k["on_time_rate"] == 1.0 and k["orders_delivered"] == 1 and k["trips"] == 1


def test_waits_for_window_and_counts_lateness():
    sim, node = _single_order_sim()
    early = sim.add_order(node, 1, 60.0, 70.0)  # the vehicle arrives before 60 and waits
    late = sim.add_order(node, 1, 0.0, 1.0)  # cannot be reached in one minute
    sim.step([1])
    sim.step([1])
    while sim.n_delivered < 2:
        sim.step([0])
    assert sim.orders[early].service_start == pytest.approx(60.0)
    o = sim.orders[late]
    assert o.service_start > 60.0  # served after the first, which waited
    k = sim.kpis()
    assert k["orders_on_time"] == 1 and k["orders_late"] == 1 and k["on_time_rate"] == 0.5
    assert k["lateness_mean_min"] == pytest.approx((o.service_start - 1.0) / 2)
    assert k["overdue_order_min"] == pytest.approx(o.service_start - 1.0)


def _check_books(sim: FleetSim) -> None:
    b = sim.books()
    assert b["created"] == b["delivered"] + b["pending"] + b["queued"] + b["onboard"], b
    for v in sim.vehicles:
        assert v.load_onboard + v.load_queued <= v.capacity + 1e-9
        assert v.load_onboard == pytest.approx(sum(o.demand for o in v.onboard))
        assert v.load_queued == pytest.approx(sum(o.demand for o in v.queue))
    assert all(o.vehicle == -1 for o in sim.pending)


def test_books_balance_under_arbitrary_actions():
    """Unmasked random actions, garbage included: invalid ones are ignored and counted, books always balance."""
    cfg = SMALL.model_copy(update={"order_rate_per_h": 30.0, "shift_minutes": 200.0})
    sim = FleetSim(cfg, np.random.default_rng(7))
    rng = np.random.default_rng(8)
    n_vehicles, k = sim.n_vehicles, sim.max_pending
    for t in range(400):
        action = rng.integers(-2, k + 3, size=n_vehicles)
        mask = sim.action_masks().reshape(n_vehicles, k + 1)
        n_pending = len(sim.pending)
        sim.step(action)
        in_range = (action >= 0) & (action <= k)
        expected_min_invalid = int((~in_range).sum()) + int(sum(
            1 for v, a in enumerate(action) if 0 < a <= k and not mask[v, a]))
        assert sim.invalid_tick >= expected_min_invalid
        assert len(sim.pending) >= n_pending - n_vehicles
        _check_books(sim)
    k_ = sim.kpis()
    assert k_["invalid_actions"] > 0 and k_["orders_delivered"] > 0
    assert sim.now == pytest.approx(400.0)
    assert k_["vehicle_utilization"] <= 1.0 + 1e-9


def test_duplicate_assignment_goes_to_first_vehicle():
    sim, node = _single_order_sim(n_vehicles=3)
    sim.add_order(node, 1, 0.0, 100.0)
    sim.step([1, 1, 0])
    assert sim.invalid_tick == 1
    assert [len(v.queue) for v in sim.vehicles] == [1, 0, 0]


def test_mask_forbids_heavy_orders_empty_slots_and_after_shift():
    sim, node = _single_order_sim(capacity_units=10.0, shift_minutes=5.0)
    sim.add_order(node, 8, 0.0, 100.0)
    sim.add_order(node, 4, 0.0, 100.0)
    k1 = sim.max_pending + 1
    assert sim.action_masks().tolist() == [True, True, True] + [False] * (k1 - 3)
    sim.step([1])  # 8 units queued, 2 left
    assert sim.action_masks().tolist() == [True, False] + [False] * (k1 - 2)
    sim.step([1])  # too heavy: ignored
    assert sim.invalid_tick == 1 and len(sim.pending) == 1
    while sim.now < 5.0:
        sim.step([0])
    sim.add_order(node, 1, 0.0, 100.0)
    assert sim.action_masks().tolist() == [True] + [False] * (k1 - 1)


def test_observation_layout_and_space():
    env = DispatchEnv(SMALL)
    obs, info = env.reset(seed=0)
    assert obs["orders"].shape == (SMALL.max_pending_orders, len(ORDER_FEATURES))
    assert obs["vehicles"].shape == (SMALL.n_vehicles, len(VEHICLE_FEATURES))
    assert obs["clock"].shape == (len(CLOCK_FEATURES),)
    assert obs["clock"][0] == pytest.approx(SMALL.start_hour)
    assert info["action_mask"].shape == (SMALL.n_vehicles * (SMALL.max_pending_orders + 1),)
    policy = NearestNeighbourDispatcher(env)
    for _ in range(300):
        obs, *_ = env.step(policy.act(obs))
        assert env.observation_space.contains(obs)
        sim = env.sim
        n = min(len(sim.pending), sim.max_pending)
        assert (obs["orders"][:n, 0] == 1).all() and (obs["orders"][n:] == 0).all()
        for row, o in zip(obs["orders"], sim.pending):
            assert row[1] == o.node and row[4] == o.demand
            assert row[6] == pytest.approx(o.window_end - sim.now, abs=1e-3)
        assert obs["clock"][3] == len(sim.pending)
        for row, v in zip(obs["vehicles"], sim.vehicles):
            assert row[2] == pytest.approx(v.remaining_capacity)
            assert row[4] == (v.activity == 0)
    # the core returns exactly the env's observation
    for key, value in env.sim.observation().items():
        np.testing.assert_array_equal(value, obs[key])


def test_check_env_passes():
    check_env(DispatchEnv().unwrapped, skip_render_check=True)
    hetero = FleetConfig(n_depots=2, vehicles=[{"capacity_units": 10, "speed_kmh": 30}, {"capacity_units": 30}],
                         road=RoadConfig(n_nodes=30, seed=4), max_pending_orders=5)
    check_env(DispatchEnv(hetero).unwrapped, skip_render_check=True)


def _rollout(seed: int, cfg: FleetConfig = SMALL, policy_cls=NearestNeighbourDispatcher, minutes: float = 240.0):
    env = DispatchEnv(cfg, episode_minutes=minutes)
    policy = policy_cls(env)
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    trace, done = [], False
    while not done:
        action = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((action.tolist(), reward, obs["orders"].tobytes(), obs["vehicles"].tobytes()))
        done = terminated or truncated
    return trace, env.sim.kpis()


@pytest.mark.parametrize("policy_cls", [NearestNeighbourDispatcher, SavingsDispatcher, RandomDispatcher])
def test_determinism_per_seed(policy_cls):
    a, ka = _rollout(3, policy_cls=policy_cls)
    b, kb = _rollout(3, policy_cls=policy_cls)
    c, _ = _rollout(4, policy_cls=policy_cls)
    assert a == b and ka == kb
    assert a != c
    assert len(a) == 240


def test_reward_matches_its_formula():
    cfg = SMALL
    env = DispatchEnv(cfg, episode_minutes=300.0)
    obs, _ = env.reset(seed=1)
    policy = RandomDispatcher(env, seed=1)
    total = 0.0
    for _ in range(300):
        obs, reward, _, truncated, info = env.step(policy.act(obs))
        assert reward == pytest.approx(cfg.delivery_reward * info["delivered"] - cfg.distance_cost_per_km * info["km"]
                                       - cfg.lateness_cost_per_min * info["overdue_order_min"]
                                       - cfg.invalid_action_cost * info["invalid_actions"])
        total += reward
    assert truncated
    k = env.sim.kpis()
    assert total == pytest.approx(cfg.delivery_reward * k["orders_delivered"] - cfg.distance_cost_per_km
                                  * k["distance_km"] - cfg.lateness_cost_per_min * k["overdue_order_min"]
                                  - cfg.invalid_action_cost * k["invalid_actions"])


# ----------------------------------------------------------------------------------------- baselines
def test_baselines_respect_the_mask_and_beat_random_on_time():
    cfg = FleetConfig()  # default load: about 90% of the fleet's time is needed
    on_time = {}
    for cls in (RandomDispatcher, NearestNeighbourDispatcher, SavingsDispatcher):
        rates = []
        for seed in range(3):
            env = DispatchEnv(cfg, episode_minutes=360.0)
            policy = cls(env)
            policy.reset(seed)
            obs, info = env.reset(seed=seed)
            done = False
            while not done:
                action = policy.act(obs)
                mask = info["action_mask"].reshape(env.sim.n_vehicles, -1)
                assert mask[np.arange(len(action)), action].all()
                obs, _, _, done, info = env.step(action)
                assert info["invalid_actions"] == 0
            rates.append(env.sim.kpis()["on_time_rate"])
        on_time[cls.__name__] = float(np.mean(rates))
    assert on_time["NearestNeighbourDispatcher"] > on_time["RandomDispatcher"] + 0.1, on_time
    assert on_time["SavingsDispatcher"] > on_time["RandomDispatcher"] + 0.1, on_time


def _order_stream(cfg: FleetConfig, seed: int, minutes: float) -> list[tuple]:
    sim = FleetSim(cfg, np.random.default_rng(seed))
    idle = np.zeros(sim.n_vehicles, dtype=np.int64)
    while sim.now < minutes:
        sim.step(idle)
    return [(o.created, o.node, o.demand, o.window_start, o.window_end) for o in sim.orders.values()]


def _serve_all(cfg: FleetConfig, policy_cls, orders: list[tuple]) -> dict[str, float]:
    """Feed a fixed order stream through add_order (as the Plant does) and run until all are delivered."""
    sim = FleetSim(cfg, np.random.default_rng(0), generate_orders=False)
    policy = policy_cls(sim)
    policy.reset(0)
    i = 0
    while i < len(orders) or sim.n_delivered < len(orders):
        while i < len(orders) and orders[i][0] <= sim.now:
            _, node, demand, ws, we = orders[i]
            sim.add_order(node, demand, ws, we)
            i += 1
        sim.step(policy.act(sim.observation()))
        _check_books(sim)
        assert sim.now < 3000, "the fleet should clear the orders"
    k = sim.kpis()
    assert k["orders_delivered"] == len(orders)
    # all delivered: lateness charged while waiting equals lateness at delivery
    assert k["overdue_order_min"] == pytest.approx(k["lateness_mean_min"] * len(orders))
    return k


def test_savings_drives_fewer_km_than_nearest_neighbour_for_the_same_orders():
    cfg = FleetConfig(shift_minutes=3000.0)
    for seed in range(3):
        orders = _order_stream(cfg, seed, minutes=240.0)
        nn = _serve_all(cfg, NearestNeighbourDispatcher, orders)
        sv = _serve_all(cfg, SavingsDispatcher, orders)
        assert sv["distance_km"] < nn["distance_km"], (seed, sv["distance_km"], nn["distance_km"])
        assert sv["on_time_rate"] >= nn["on_time_rate"] - 0.05


def test_dispatchers_handle_multiple_depots():
    cfg = FleetConfig(n_depots=2, n_vehicles=4, road=RoadConfig(n_nodes=64, seed=9))
    for cls in (NearestNeighbourDispatcher, SavingsDispatcher):
        _, k = _rollout(0, cfg, cls, minutes=300.0)
        assert k["on_time_rate"] > 0.8 and k["invalid_actions"] == 0
    sim = FleetSim(cfg, np.random.default_rng(0))
    assert len(set(sim.vehicle_depots)) == 2 and not set(sim.depot_nodes) & set(sim.customer_nodes)


def test_plant_style_injection():
    sim = FleetSim(SMALL, np.random.default_rng(5), generate_orders=False)
    for _ in range(50):
        sim.step(np.zeros(sim.n_vehicles, dtype=np.int64))
    assert sim.n_created == 0
    oid = sim.add_random_order(demand_units=2)
    o = sim.orders[oid]
    assert o.node in sim.customer_nodes and o.demand == 2 and o.created == sim.now
    assert o.window_end - o.window_start == pytest.approx(SMALL.time_window_min)
    assert math.isnan(o.delivered_at)
    with pytest.raises(AssertionError):
        sim.add_order(sim.depot_nodes[0], 1, 0, 10)
    with pytest.raises(AssertionError):
        sim.add_order(o.node, SMALL.capacity_units + 1, 0, 10)
