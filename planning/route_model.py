"""GNN route planner for the CVRP (issue 6): a PyTorch Geometric encoder and an attention decoder.

* **Encoder.** One graph per instance: the depot and the customers are the nodes; every node receives
  edges from its ``k`` nearest nodes (by the instance's distance matrix, which may be road distances)
  and from the depot, and the depot from every customer. Edges carry both directions' distances, so
  asymmetric matrices are seen as such. ``n_layer`` pre-norm blocks of `TransformerConv` (graph
  attention with edge features, Shi et al. 2021) and a feed-forward layer, each with a residual.
* **Decoder.** Kool, van Hoof and Welling (2019), "Attention, learn to solve routing problems!": the
  context is the graph embedding plus the current node's embedding and the remaining load; one
  multi-head glimpse over the feasible nodes, then single-head compatibilities clipped with
  ``10 tanh``. Masked: visited customers, customers that do not fit the remaining load, and the depot
  right after the depot (unless every customer is served). Routes grow one node per step, for a batch
  of instances and ``P`` rollouts per instance at once. Beside Kool's compatibilities, each candidate's
  logit gets a bias: minus a learned multiple of its distance from the current node, plus a small MLP
  over its distances and the load left (``RouteModelDims.distance_bias``), so that an untrained
  decoder is already nearest neighbour and training only learns what to add to it.
* **Multi-start.** POMO (Kwon et al. 2020): rollout ``p`` first visits customer ``1 + p mod n``, and
  the eight symmetries of the unit square give eight more views of one instance at inference.

Coordinates and distances are scaled together so that the coordinates span [0, 1]; an instance without
coordinates (the dispatcher's road-distance instances) is placed in the plane by classical MDS of its
distances. A solution is a list of routes of customer indices, the depot left out, as in
`planning.baselines.routing.validate_solution`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # torch_geometric scripts a helper at import; torch deprecates torch.jit.script
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    import torch_geometric  # noqa: F401
from torch_geometric.data import Batch, Data
from torch_geometric.nn import TransformerConv
from torch_geometric.utils import to_dense_batch

from environments.errors import ShopfloorInputError
from planning.baselines.routing import CVRPInstance, solution_cost, validate_solution
from planning.local_search import polish

N_NODE_FEATURES = 7  # x, y, demand / capacity, is_depot, distance from the depot, window open, window close
N_EDGE_FEATURES = 2  # d(source, target), d(target, source)
N_BIAS_FEATURES = 5  # per candidate j: d(here, j), d(j, depot), d(here, depot), demand_j - load left, load left


@dataclass(frozen=True)
class RouteModelDims:
    d_model: int = 64  # at 128 a training step cost 4x as much, and in equal time imitation learned less
    n_head: int = 4
    n_layer: int = 4
    d_ff: int = 128
    k_neighbours: int = 16
    tanh_clip: float = 10.0
    distance_bias: bool = True
    """Add ``-w d(current, j)`` to each candidate's logit, with ``w`` learned (see `AttentionDecoder`).
    Checkpoints from before this field load with it off."""
    bias_hidden: int = 32
    """Hidden width of the per-candidate bias MLP over distances and loads (0: the distance term alone)."""

    def __post_init__(self) -> None:
        if self.n_head < 1 or self.d_model < self.n_head or self.d_model % self.n_head:
            raise ShopfloorInputError(f"d_model={self.d_model} with n_head={self.n_head} is invalid; allowed: "
                                      "d_model a positive multiple of n_head (each head takes an equal share).")
        for name in ("n_layer", "d_ff", "k_neighbours"):
            if getattr(self, name) < 1:
                raise ShopfloorInputError(f"{name}={getattr(self, name)} is invalid; allowed: an int >= 1.")


# ------------------------------------------------------------------------------------------------ inputs
def unit_coords(instance: CVRPInstance) -> tuple[np.ndarray, np.ndarray, float]:
    """Coordinates in [0, 1]^2 and the distances in the same units. Returns (coords, distances, scale)."""
    d = instance.distances
    xy = instance.coords
    if xy is None:  # classical MDS: the plane positions whose distances best match the (symmetrised) matrix
        d2 = (0.5 * (d + d.T)) ** 2
        j = np.eye(len(d)) - 1.0 / len(d)
        w, v = np.linalg.eigh(-0.5 * j @ d2 @ j)
        xy = v[:, -2:] * np.sqrt(np.clip(w[-2:], 0.0, None))
    xy = np.asarray(xy, dtype=float) - np.min(xy, axis=0)
    scale = float(xy.max()) or float(d.max()) or 1.0
    return xy / scale, d / scale, scale


def dihedral(xy: np.ndarray, t: int) -> np.ndarray:
    """The ``t``-th of the 8 symmetries of the unit square (t = 0 is the identity)."""
    x, y = xy[:, 0], xy[:, 1]
    x, y = (x, y) if t % 2 == 0 else (y, x)
    x = 1.0 - x if t & 2 else x
    y = 1.0 - y if t & 4 else y
    return np.stack([x, y], axis=1)


def instance_graph(instance: CVRPInstance, k: int, transform: int = 0) -> tuple[Data, np.ndarray, float]:
    """The encoder's graph of one instance. Returns (graph, scaled distances (N, N), scale)."""
    xy, d, scale = unit_coords(instance)
    xy, n_nodes = dihedral(xy, transform), len(d)
    tw = np.zeros((n_nodes, 2))
    if instance.time_windows is not None:
        tw = np.asarray(instance.time_windows, dtype=float)
        tw = tw / (float(tw[:, 1].max()) or 1.0)
    x = np.column_stack([xy, instance.demands / instance.capacity, np.arange(n_nodes) == 0, d[0], tw])
    adj = np.zeros((n_nodes, n_nodes), dtype=bool)  # adj[target, source]
    k = min(k, n_nodes - 1)
    if k > 0:
        off_diag = d + np.diag(np.full(n_nodes, np.inf))
        adj[np.arange(n_nodes)[:, None], np.argpartition(off_diag, k - 1, axis=1)[:, :k]] = True
    adj[:, 0] = adj[0, :] = True
    np.fill_diagonal(adj, False)
    dst, src = np.nonzero(adj)
    graph = Data(x=torch.tensor(x, dtype=torch.float32),
                 edge_index=torch.tensor(np.stack([src, dst]), dtype=torch.long),
                 edge_attr=torch.tensor(np.stack([d[src, dst], d[dst, src]], axis=1), dtype=torch.float32))
    return graph, d, scale


@dataclass
class InstanceBatch:
    """Instances padded to one size ``N`` (the largest depot + customers); B graphs (instances x views)."""

    graph: Batch
    distances: Tensor  # shape = (B, N, N), scaled; padding 0
    demands: Tensor  # shape = (B, N), float64, the instance's units; padding 0
    capacity: Tensor  # shape = (B,), float64
    node_mask: Tensor  # shape = (B, N), bool, True for a real node
    n_customers: Tensor  # shape = (B,), long
    scale: Tensor  # shape = (B,), float64: scaled cost x scale = cost in the instance's units


def make_batch(instances: list[CVRPInstance], k: int, transforms: list[int] | None = None) -> InstanceBatch:
    """One graph per instance, the ``i``-th seen through symmetry ``transforms[i]`` (default: as is)."""
    transforms = transforms or [0] * len(instances)
    graphs, dists, scales = zip(*(instance_graph(inst, k, t) for inst, t in zip(instances, transforms)))
    n = max(len(d) for d in dists)
    dist = torch.zeros(len(dists), n, n)
    demands = torch.zeros(len(dists), n, dtype=torch.float64)
    for b, (d, inst) in enumerate(zip(dists, instances)):
        dist[b, :len(d), :len(d)] = torch.from_numpy(d)
        demands[b, :len(d)] = torch.from_numpy(inst.demands)
    return InstanceBatch(Batch.from_data_list(list(graphs)), dist, demands,
                         torch.tensor([inst.capacity for inst in instances], dtype=torch.float64),
                         torch.arange(n)[None] < torch.tensor([len(d) for d in dists])[:, None],
                         torch.tensor([inst.n_customers for inst in instances]),
                         torch.tensor(scales, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- the model
class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_ff: int):
        super().__init__()
        self.attn = TransformerConv(d_model, d_model // n_head, heads=n_head, edge_dim=N_EDGE_FEATURES,
                                    root_weight=False)
        self.attn_ln = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.mlp_ln = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x), edge_index, edge_attr)
        return x + self.mlp(self.mlp_ln(x))


class RouteEncoder(nn.Module):
    def __init__(self, dims: RouteModelDims):
        super().__init__()
        self.embed = nn.Linear(N_NODE_FEATURES, dims.d_model)
        self.blocks = nn.ModuleList(EncoderBlock(dims.d_model, dims.n_head, dims.d_ff) for _ in range(dims.n_layer))
        self.ln_post = nn.LayerNorm(dims.d_model)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """
        x : Tensor, shape = (n_nodes, N_NODE_FEATURES), the nodes of all graphs of a `Batch`
        edge_index : Tensor, shape = (2, n_edges);  edge_attr : Tensor, shape = (n_edges, N_EDGE_FEATURES)
        returns : Tensor, shape = (n_nodes, d_model)
        """
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, edge_index, edge_attr)
        return self.ln_post(h)


@dataclass
class DecoderCache:
    """What the decoder computes once per instance (Kool et al.'s "precompute")."""

    step_nodes: Tensor  # shape = (B, N, d_model): each node's part of the query, graph context included
    glimpse_k: Tensor  # shape = (B, n_head, N, d_head)
    glimpse_v: Tensor  # shape = (B, n_head, N, d_head)
    logit_k: Tensor  # shape = (B, N, d_model), with the glimpse's output projection folded in
    distances: Tensor | None = None  # shape = (B, N, N), in units of the mean customer spacing, for the bias
    demand_share: Tensor | None = None  # shape = (B, N), demand / capacity, for the bias


class AttentionDecoder(nn.Module):
    def __init__(self, dims: RouteModelDims):
        super().__init__()
        self.n_head, self.tanh_clip = dims.n_head, dims.tanh_clip
        self.project_nodes = nn.Linear(dims.d_model, 3 * dims.d_model, bias=False)
        self.project_graph = nn.Linear(dims.d_model, dims.d_model, bias=False)
        # Kool et al.'s step context is W [h_current; load]; it is split into W_h h_current + w_load load so
        # that W_h h is computed once per node instead of once per step.
        self.project_current = nn.Linear(dims.d_model, dims.d_model, bias=False)
        self.project_load = nn.Linear(1, dims.d_model, bias=False)
        self.project_out = nn.Linear(dims.d_model, dims.d_model, bias=False)
        # The distance bias: an untrained decoder already prefers near customers (nearest neighbour), and
        # training learns what to add to that, rather than learning nearness itself from coordinates (a
        # 35-minute REINFORCE run without it stayed behind nearest neighbour). log w starts at 0.
        self.log_distance_weight = nn.Parameter(torch.zeros(())) if dims.distance_bias else None
        # What the bias adds: a small MLP over the candidate's distances (from here, to the depot, and here to
        # the depot) and its demand against the load left. Zero at the start, so it begins as the plain term.
        self.bias_mlp = None
        if dims.distance_bias and dims.bias_hidden:
            self.bias_mlp = nn.Sequential(nn.Linear(N_BIAS_FEATURES, dims.bias_hidden), nn.ReLU(),
                                          nn.Linear(dims.bias_hidden, 1))
            nn.init.zeros_(self.bias_mlp[-1].weight)
            nn.init.zeros_(self.bias_mlp[-1].bias)

    def precompute(self, nodes: Tensor, node_mask: Tensor, distances: Tensor | None = None,
                   demand_share: Tensor | None = None) -> DecoderCache:
        """nodes : Tensor, shape = (B, N, d_model);  node_mask : Tensor, shape = (B, N), True for real nodes
        distances : Tensor, shape = (B, N, N), scaled to the unit square; demand_share : Tensor, shape = (B, N),
        demand / capacity: both are needed for the distance bias"""
        b, n, d = nodes.shape
        graph = (nodes * node_mask[..., None]).sum(1) / node_mask.sum(1, keepdim=True)
        gk, gv, lk = self.project_nodes(nodes).chunk(3, dim=-1)
        heads = lambda t: t.view(b, n, self.n_head, d // self.n_head).transpose(1, 2)  # noqa: E731
        # logits = project_out(glimpse) . lk = glimpse . (lk W_out): the projection is applied once per node
        spaced = None
        if self.log_distance_weight is not None:
            # in units of the typical gap between customers (~ 1 / sqrt(n) in the unit square), so one
            # weight fits 20 customers and 100 alike
            spaced = distances * (node_mask.sum(1) - 1).clamp_min(1).float().sqrt()[:, None, None]
        return DecoderCache(self.project_graph(graph)[:, None] + self.project_current(nodes), heads(gk), heads(gv),
                            lk @ self.project_out.weight, spaced, demand_share)

    def forward(self, cache: DecoderCache, current: Tensor, load: Tensor, mask: Tensor) -> Tensor:
        """
        current : Tensor, shape = (B, P), long, the node each rollout stands at
        load : Tensor, shape = (B, P), remaining load / capacity
        mask : Tensor, shape = (B, P, N), bool, True where the next node may NOT be
        returns : Tensor, shape = (B, P, N), log-probabilities of the next node (-inf where masked)
        """
        b, p = current.shape
        d = cache.step_nodes.shape[-1]
        query = cache.step_nodes.gather(1, current[..., None].expand(b, p, d)) + self.project_load(load[..., None])
        # (B, n_head, P, d_head); scaled here, on P rows, rather than the (P, N) compatibilities
        query = query.view(b, p, self.n_head, d // self.n_head).transpose(1, 2) / math.sqrt(d // self.n_head)
        blocked = torch.zeros(mask.shape).masked_fill_(mask, -math.inf)[:, None]  # one fill, not one per head
        attn = torch.softmax(query @ cache.glimpse_k.transpose(2, 3) + blocked, dim=-1)
        glimpse = (attn @ cache.glimpse_v).transpose(1, 2).reshape(b, p, d) / math.sqrt(d)
        logits = self.tanh_clip * torch.tanh(glimpse @ cache.logit_k.transpose(1, 2))
        if self.log_distance_weight is not None:
            n = cache.distances.shape[-1]
            from_current = cache.distances.gather(1, current[..., None].expand(b, p, n))
            logits = logits - self.log_distance_weight.exp() * from_current
            if self.bias_mlp is not None:
                features = torch.stack(torch.broadcast_tensors(
                    from_current, cache.distances[:, None, :, 0], from_current[..., :1],
                    cache.demand_share[:, None, :] - load[..., None], load[..., None]), dim=-1)
                logits = logits + self.bias_mlp(features)[..., 0]
        return torch.log_softmax(logits.masked_fill(mask, -math.inf), dim=-1)


@dataclass
class Rollout:
    actions: Tensor  # shape = (B, P, T), long; 0 is the depot, padded with 0 once a rollout is done
    log_prob: Tensor  # shape = (B, P), sum over the chosen steps (a forced first customer counts 0)
    cost: Tensor  # shape = (B, P), in scaled units (x InstanceBatch.scale for the instance's units)


def sample(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row of ``probs`` (shape = (..., N), rows may be unnormalised), never one of probability 0.

    Inverse-CDF sampling: one uniform per row instead of torch.multinomial's one per entry (3x faster here).
    """
    cdf = probs.cumsum(-1)
    u = (1.0 - torch.rand(probs.shape[:-1], generator=generator))[..., None] * cdf[..., -1:]  # u in (0, 1]
    return (cdf < u).sum(-1).clamp_max(probs.shape[-1] - 1)


def pomo_starts(n_customers: Tensor, p: int) -> Tensor:
    """First customers ``1 + (i mod n)`` for i < p, shape = (B, p): every customer once when p = n."""
    return 1 + torch.arange(p)[None] % n_customers[:, None]


class RouteModel(nn.Module):
    def __init__(self, dims: RouteModelDims = RouteModelDims()):
        super().__init__()
        assert dims.d_model % dims.n_head == 0, f"d_model {dims.d_model} must be a multiple of n_head {dims.n_head}"
        self.dims = dims
        self.encoder = RouteEncoder(dims)
        self.decoder = AttentionDecoder(dims)

    def encode(self, batch: InstanceBatch) -> DecoderCache:
        g = batch.graph
        nodes, mask = to_dense_batch(self.encoder(g.x, g.edge_index, g.edge_attr), g.batch)
        assert torch.equal(mask, batch.node_mask), "graph and padding disagree"
        return self.decoder.precompute(nodes, mask, batch.distances,
                                       (batch.demands / batch.capacity[:, None]).float())

    def rollout(self, batch: InstanceBatch, n_rollouts: int, starts: Tensor | None = None, greedy: bool = True,
                generator: torch.Generator | None = None) -> Rollout:
        """Build ``n_rollouts`` solutions per graph, greedily or by sampling.

        starts : Tensor, shape = (B, n_rollouts), long, optional: each rollout's first customer (POMO's
            multi-start, see `pomo_starts`); without it every rollout chooses its first customer itself
        """
        cache = self.encode(batch)
        (b, n), p = batch.node_mask.shape, n_rollouts
        demands, capacity = batch.demands[:, None, :], batch.capacity[:, None]
        visited = (~batch.node_mask)[:, None, :].expand(b, p, n).clone()  # padding counts as served
        load, current = capacity.expand(b, p).clone(), torch.zeros(b, p, dtype=torch.long)
        actions, log_prob = [], torch.zeros(b, p)

        def visit(nxt: Tensor) -> None:
            nonlocal visited, load, current
            visited = visited.scatter(2, nxt[..., None], True)
            visited[..., 0] = False
            load = torch.where(nxt == 0, capacity, load - demands.expand(b, p, n).gather(2, nxt[..., None])[..., 0])
            current = nxt
            actions.append(nxt)

        if starts is not None:
            assert starts.shape == (b, p) and (starts >= 1).all() and (starts <= batch.n_customers[:, None]).all()
            visit(starts)
        for _ in range(2 * n + 1):  # each customer and a return to the depot at most
            done = visited[..., 1:].all(-1)
            if done.all() and (current == 0).all():
                break
            mask = visited | (demands > load[..., None] + 1e-9)
            mask[..., 0] = (current == 0) & ~done
            logp = self.decoder(cache, current, (load / capacity).float(), mask)
            if greedy:
                nxt = logp.argmax(-1)
            else:
                nxt = sample(logp.exp(), generator)
            log_prob = log_prob + logp.gather(2, nxt[..., None])[..., 0]
            visit(nxt)
        else:
            raise AssertionError("a rollout did not finish in 2 N + 1 steps")
        tour = F.pad(torch.stack(actions, dim=2), (1, 1))  # depot at both ends
        legs = batch.distances.view(b, 1, n * n).expand(b, p, n * n).gather(2, tour[..., :-1] * n + tour[..., 1:])
        return Rollout(tour[..., 1:-1], log_prob, legs.sum(-1))


# ------------------------------------------------------------------------------------------- inference
MODES = ("greedy", "sample", "multistart")


@dataclass
class RouteSolution:
    routes: list[list[int]]  # customer indices per vehicle, the depot left out
    cost: float  # in the instance's units
    n_solutions: int  # decoded solutions the best was taken from
    seconds: float  # wall time, including the polish


def actions_to_routes(actions: list[int]) -> list[list[int]]:
    """Split a node sequence at the depot (0) into routes; empty routes are dropped."""
    routes, route = [], []
    for a in actions:
        if a == 0:
            if route:
                routes.append(route)
            route = []
        else:
            route.append(a)
    return routes + ([route] if route else [])


@torch.inference_mode()
def solve_many(model: RouteModel, instances: list[CVRPInstance], mode: str = "greedy", n: int | None = None,
               augment: int = 1, polish_s: float = 0.0, seed: int = 0,
               views: list[int] | None = None) -> list[RouteSolution]:
    """Solve several instances in one batch; each solution is checked with `validate_solution`.

    mode : "greedy" (one rollout from the depot), "sample" (``n`` sampled rollouts, default 64) or
        "multistart" (POMO greedy from ``n`` different first customers, default all of them)
    augment : 1..8 views of each instance (symmetries of the unit square), every one decoded
    polish_s : local-search time budget per instance, seconds (0: none)
    views : which of the 8 symmetries to decode (default: the first ``augment``)
    """
    if mode not in MODES:
        raise ShopfloorInputError(f"mode={mode!r} is invalid; allowed: {list(MODES)}.")
    if not 1 <= augment <= 8:
        raise ShopfloorInputError(f"augment={augment} is invalid; allowed: 1..8.")
    if n is not None and n < 1:
        raise ShopfloorInputError(f"n={n} is invalid; allowed: solutions per view >= 1.")
    t0 = time.perf_counter()
    model.eval()
    p = {"greedy": 1, "sample": n or 64, "multistart": n or max(i.n_customers for i in instances)}[mode]
    transforms = list(views) if views is not None else list(range(augment))
    augment = len(transforms)
    pairs = [(inst, t) for inst in instances for t in transforms]
    batch = make_batch([v[0] for v in pairs], model.dims.k_neighbours, [v[1] for v in pairs])
    starts = pomo_starts(batch.n_customers, p) if mode == "multistart" else None
    out = model.rollout(batch, p, starts, greedy=mode != "sample", generator=torch.Generator().manual_seed(seed))
    cost = out.cost.view(len(instances), augment * p)
    best = cost.argmin(1)
    actions = out.actions.view(len(instances), augment * p, -1)
    t_decode = (time.perf_counter() - t0) / len(instances)
    solutions = []
    for i, inst in enumerate(instances):
        t1 = time.perf_counter()
        routes = actions_to_routes(actions[i, best[i]].tolist())
        validate_solution(inst, routes)
        if polish_s > 0:
            routes = polish(inst, routes, polish_s)
        solutions.append(RouteSolution(routes, solution_cost(inst, routes), augment * p,
                                       t_decode + time.perf_counter() - t1))
    return solutions


def solve(model: RouteModel, instance: CVRPInstance, mode: str = "greedy", n: int | None = None,
          augment: int = 1, polish_s: float = 0.0, seed: int = 0) -> RouteSolution:
    """Solve one instance (see `solve_many`)."""
    return solve_many(model, [instance], mode, n, augment, polish_s, seed)[0]


def solve_within(model: RouteModel, instance: CVRPInstance, budget_s: float, decode_share: float = 0.5,
                 seed: int = 0) -> RouteSolution:
    """The best solution found in about ``budget_s`` seconds: POMO multi-start decoding of one view of the
    instance after another (the 8 symmetries of the square) while ``decode_share`` of the budget lasts,
    then local search on the best for what is left. At least one view is decoded, whatever the budget."""
    t0 = time.perf_counter()
    best, view_s, tried = None, 0.0, 0
    for view in range(8):
        if view and time.perf_counter() - t0 + view_s > decode_share * budget_s:
            break
        t_view = time.perf_counter()
        found = solve_many(model, [instance], "multistart", seed=seed, views=[view])[0]
        best = found if best is None or found.cost < best.cost else best
        tried += found.n_solutions
        view_s = time.perf_counter() - t_view
    routes = polish(instance, best.routes, max(0.0, budget_s - (time.perf_counter() - t0)), seed)
    return RouteSolution(routes, solution_cost(instance, routes), tried, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- weights
def save_router(path: str | os.PathLike, model: RouteModel, meta: dict) -> None:
    """Write ``{"dims", "state_dict", "meta"}`` (meta: training command, seed, config, validation gap)."""
    torch.save({"dims": asdict(model.dims), "state_dict": model.state_dict(), "meta": meta}, path)


def load_router(path: str | os.PathLike) -> tuple[RouteModel, dict]:
    """Load a route model written by `save_router`. Returns the model in eval mode and the checkpoint."""
    if not os.path.isfile(path):
        raise ShopfloorInputError(f"route model {os.fspath(path)!r} does not exist; allowed: a file written by "
                                  "`shopfloor train router`.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = RouteModel(RouteModelDims(**{"distance_bias": False, "bias_hidden": 0, **ckpt["dims"]}))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # torch raises many types for a foreign file
        raise ShopfloorInputError(f"{os.fspath(path)!r} is not a route model checkpoint ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:120] if str(e) else ''}); allowed: a file written by "
                                  "`shopfloor train router`.") from None
    return model.eval(), ckpt
