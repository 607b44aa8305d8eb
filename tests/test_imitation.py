"""Imitation of the search's routes (planning/imitation.py): the expert set is seeded and good, the
teacher-forced states replay the expert's routes under the decoder's own masks, and a few steps of
imitation raise the probability the planner gives the expert's choices."""

from dataclasses import replace

import numpy as np
import torch

from planning.baselines.routing import (
    clarke_wright_savings,
    solution_cost,
    validate_solution,
)
from planning.cvrp_generator import GeneratorConfig
from planning.imitation import expert_dataset, imitation_loss, teacher_states
from planning.route_model import RouteModel, RouteModelDims, actions_to_routes

SMALL = replace(GeneratorConfig(), n_min=10, n_max=20)


def test_expert_set_is_seeded_feasible_and_no_worse_than_savings():
    a = expert_dataset(5, 300, SMALL, iterations_per_customer=20, workers=1)
    b = expert_dataset(5, 300, SMALL, iterations_per_customer=20, workers=2)  # 2 chunks in 2 processes
    assert len(a) == 300 and [r for _, r in a] == [r for _, r in b]
    gains = []
    for instance, routes in a:
        validate_solution(instance, routes)
        gains.append(solution_cost(instance, routes) / solution_cost(instance, clarke_wright_savings(instance)) - 1)
    assert max(gains) <= 1e-9 and np.mean(gains) < -0.005  # never worse, and better on average


def test_teacher_states_replay_the_routes_under_the_decoders_masks():
    instance, routes = expert_dataset(9, 1, SMALL, iterations_per_customer=5, workers=1)[0]
    n = instance.n_customers
    current, load, mask, targets = teacher_states(instance, routes, n + 4, np.random.default_rng(0))
    assert len(current) == n + len(routes) and current[0] == 0 and load[0] == 1.0
    assert not (mask & targets).any(), "a target the decoder could not choose"
    assert mask[:, n + 1:].all(), "padding must stay masked"
    # following one target at each step (the sequence's own: the next current node) rebuilds the routes
    taken = list(current[1:]) + [0]
    for t, node in enumerate(taken):
        assert targets[t, node]
    rebuilt = [sorted(r) for r in actions_to_routes(taken)]
    assert sorted(rebuilt) == sorted(sorted(r) for r in routes)
    # leaving the depot, every end of every route not driven yet is a target
    first = targets[0]
    assert set(np.flatnonzero(first)) == {c for r in routes for c in (r[0], r[-1])}


def test_a_few_imitation_steps_raise_the_experts_probability():
    torch.manual_seed(0)
    experts = expert_dataset(11, 48, SMALL, iterations_per_customer=10, workers=1)
    held, train = experts[:16], experts[16:]
    model = RouteModel(RouteModelDims(d_model=32, n_head=4, d_ff=64, n_layer=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def held_loss() -> float:
        with torch.no_grad():
            return float(imitation_loss(model, held, np.random.default_rng(1)))

    before = held_loss()
    rng = np.random.default_rng(2)
    for _ in range(15):
        loss = imitation_loss(model, train, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_loss() < before - 0.1
