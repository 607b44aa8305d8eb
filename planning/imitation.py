"""Imitation of a search's routes: the first phase of ``shopfloor train router``.

REINFORCE alone learned too slowly here: after 35 minutes on two cores its greedy routes were still
worse than nearest neighbour (benchmarks/RESULTS.md, issue 6). A supervised signal is far cheaper to
learn from. So the planner first imitates good solutions, then REINFORCE (POMO) fine-tunes it on its
own rollouts, which also corrects what imitation cannot see: the states the planner's own mistakes lead
to.

* **The expert.** Clarke-Wright savings, improved by a fixed number of ruin-and-recreate iterations
  (`planning.ruin_recreate`, ``iterations_per_customer`` x n). A fixed count, not a time budget, so one
  seed gives the same routes on any machine. At 60 per customer it lands ~2.7% below savings on
  Kool's CVRP-50 (~1.8% above PyVRP's 5-second solutions).
* **Teacher forcing.** A solution is a set of routes with no order and no direction. Each time it is
  shown, its routes are put in a random order, each one driven in a random direction, and the instance
  is seen through a random one of the 8 symmetries of the square. The decoder is then run once over
  every step of that sequence at the same time (its step inputs, the current node, the load left and
  the mask, are all known in advance), so a step of training costs one encoder pass and one decoder
  pass, not one decoder pass per node.
* **The loss.** Minus the log-probability of the expert's next node. Leaving the depot, any end of any
  route not yet driven is as good as the sequence's own choice, so the loss there is minus the log of
  the summed probability of all of them.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor

from planning.baselines.routing import CVRPInstance, clarke_wright_savings
from planning.cvrp_generator import GeneratorConfig, random_instance
from planning.local_search import polish
from planning.route_model import RouteModel, make_batch

ExpertSolution = tuple[CVRPInstance, list[list[int]]]
CHUNK = 250  # instances per job: each job has its own seed, so any number of workers gives the same data


def expert_routes(instance: CVRPInstance, iterations_per_customer: int, seed: int) -> list[list[int]]:
    """Savings, then a fixed number of ruin-and-recreate iterations and a descent (`polish`)."""
    return polish(instance, clarke_wright_savings(instance), 0.0, seed,
                  iterations=iterations_per_customer * instance.n_customers)


def _expert_chunk(job: tuple[int, int, GeneratorConfig, int]) -> list[ExpertSolution]:
    seed, count, generator, iterations_per_customer = job
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        instance = random_instance(rng, generator)
        out.append((instance, expert_routes(instance, iterations_per_customer, int(rng.integers(2**31)))))
    return out


def expert_dataset(seed: int, count: int, generator: GeneratorConfig, iterations_per_customer: int,
                   workers: int | None = None, progress: Callable[[int], None] | None = None) -> list[ExpertSolution]:
    """``count`` generated instances with their expert routes. Chunk ``i`` draws from seed ``(seed, i)``.

    workers : processes (default: the CPUs available); 1 solves in this process.
    progress : called with the number of instances finished after each chunk.
    """
    jobs = [(np.random.SeedSequence([seed, i]).generate_state(1)[0], min(CHUNK, count - a), generator,
             iterations_per_customer) for i, a in enumerate(range(0, count, CHUNK))]
    workers = workers or len(os.sched_getaffinity(0))
    out: list[ExpertSolution] = []
    # fork: the workers only need numpy and numba; spawn would re-import the caller's __main__
    parallel = workers > 1 and len(jobs) > 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if parallel else nullcontext()
    with pool:
        for part in (pool.map if parallel else map)(_expert_chunk, jobs):
            out += part
            if progress:
                progress(len(part))
    return out


def teacher_states(instance: CVRPInstance, routes: list[list[int]], n_pad: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The decoder's inputs and targets at every step of one showing of an expert solution.

    Returns (current (T,), load left / capacity (T,), mask (T, n_pad) True where the next node may not
    be, as `RouteModel.rollout` masks, targets (T, n_pad) True for each node the expert would take);
    T is the number of customers plus the number of routes (each route ends at the depot).
    """
    q, cap, n = instance.demands, instance.capacity, instance.n_customers
    shown = [list(routes[k])[::-1] if rng.random() < 0.5 else list(routes[k]) for k in rng.permutation(len(routes))]
    steps = n + len(shown)
    current, load = np.zeros(steps, np.int64), np.zeros(steps, np.float32)
    mask, targets = np.ones((steps, n_pad), bool), np.zeros((steps, n_pad), bool)
    visited = np.zeros(n_pad, bool)
    visited[n + 1:] = True  # padding counts as served
    ends = np.zeros(n_pad, bool)  # the first and last customers of the routes not driven yet
    for route in shown:
        ends[[route[0], route[-1]]] = True
    t, here, left = 0, 0, cap
    for route in shown:
        for node in route + [0]:
            mask[t] = visited
            mask[t, 1:n + 1] |= q[1:] > left + 1e-9
            mask[t, 0] = here == 0 and not visited[1:n + 1].all()
            current[t], load[t] = here, left / cap
            if here == 0:
                targets[t] = ends
            else:
                targets[t, node] = True
            if node == 0:
                left = cap
            else:
                visited[node], left = True, left - q[node]
            here, t = node, t + 1
        ends[[route[0], route[-1]]] = False
    return current, load, mask, targets


def imitation_loss(model: RouteModel, solutions: list[ExpertSolution], rng: np.random.Generator) -> Tensor:
    """Mean over every decoder step of minus the log-probability the model gives the expert's choices."""
    instances = [s[0] for s in solutions]
    batch = make_batch(instances, model.dims.k_neighbours, rng.integers(0, 8, len(instances)).tolist())
    n_pad = batch.node_mask.shape[1]
    shown = [teacher_states(instance, routes, n_pad, rng) for instance, routes in solutions]
    b, steps = len(shown), max(len(s[0]) for s in shown)
    current, load = torch.zeros(b, steps, dtype=torch.long), torch.zeros(b, steps)
    mask = torch.ones(b, steps, n_pad, dtype=torch.bool)
    targets = torch.zeros(b, steps, n_pad, dtype=torch.bool)
    real = torch.zeros(b, steps, dtype=torch.bool)
    for i, (c, l, m, g) in enumerate(shown):
        t = len(c)
        current[i, :t], load[i, :t] = torch.from_numpy(c), torch.from_numpy(l)
        mask[i, :t], targets[i, :t], real[i, :t] = torch.from_numpy(m), torch.from_numpy(g), True
    # steps past a short sequence's end: the depot, unmasked, so that no row is all -inf
    mask[~real, 0], targets[~real, 0] = False, True
    logp = model.decoder(model.encode(batch), current, load, mask)
    chosen = torch.logsumexp(logp.masked_fill(~targets, -math.inf), dim=-1)
    return -chosen[real].mean()
