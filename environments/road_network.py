"""Road networks for the delivery fleet: a generated city or a GraphML file, and shortest-path matrices.

Every graph this module hands out is an undirected ``networkx.Graph`` with integer nodes ``0..n-1`` and

* node attributes ``x``, ``y``: position, km;
* edge attributes ``length_km`` (> 0) and ``speed_kmh`` (> 0, the road's speed limit), plus ``road_class``
  (``"street"`` or ``"arterial"``) on generated cities.

Vehicles follow the shortest-*distance* path between two nodes (Dijkstra on ``length_km``); the time on
that path is the sum over its edges of ``length_km / min(speed_kmh, vehicle speed)``. Routing by distance
keeps the km a dispatcher optimises and the km the fleet drives the same number.

Graphs are treated as immutable once measured: shortest-path trees are cached per graph object.
"""

from __future__ import annotations

import functools
import math
import os
import weakref
from collections.abc import Sequence

import networkx as nx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from environments.errors import ShopfloorInputError

DEFAULT_SPEED_KMH = 30.0  # speed limit of a GraphML edge without one, km/h


class RoadConfig(BaseModel):
    """Where the road network comes from: a generated city (default) or a GraphML file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    graphml_path: str | None = Field(None, description="GraphML road graph to load; None generates a city.")
    n_nodes: int = Field(100, ge=4, le=5000, description="Intersections in a generated city.")
    size_km: float = Field(10.0, gt=0, le=1000, description="Side of the generated (square) city, km.")
    removed_edge_fraction: float = Field(0.15, ge=0, le=0.5,
                                         description="Share of grid streets removed (parks, dead ends).")
    n_arterials: int = Field(2, ge=0, le=20, description="Fast roads per direction (whole grid rows and columns).")
    jitter: float = Field(0.2, ge=0, le=0.45, description="Intersection position noise, share of the grid spacing.")
    street_speed_kmh: float = Field(30.0, gt=0, le=200, description="Speed limit of ordinary streets, km/h.")
    arterial_speed_kmh: float = Field(50.0, gt=0, le=200, description="Speed limit of arterial roads, km/h.")
    seed: int = Field(0, ge=0, description="Seed of the generated city (the map is part of the scenario).")


# --------------------------------------------------------------------------------------------- generation
def generate_city(n_nodes: int = 100, size_km: float = 10.0, seed: int = 0, removed_edge_fraction: float = 0.15,
                  n_arterials: int = 2, jitter: float = 0.2, street_speed_kmh: float = 30.0,
                  arterial_speed_kmh: float = 50.0) -> nx.Graph:
    """A connected city-like road graph: a perturbed grid with some streets removed and a few arterials.

    Parameters
    ----------
    n_nodes : int
        Intersections. They fill a ``ceil(sqrt(n))``-wide grid row by row (the last row may be partial).
    size_km : float
        Side of the square the grid spans, km.
    seed : int
        Seed for positions and removed streets.
    removed_edge_fraction : float
        Share of street (non-arterial) edges removed; an edge is only removed if the graph stays connected.
    n_arterials : int
        Evenly spaced grid rows and columns made arterial (faster, never removed).
    jitter : float
        Uniform position noise as a share of the grid spacing.
    street_speed_kmh, arterial_speed_kmh : float
        Speed limits, km/h.

    Returns
    -------
    networkx.Graph
        Nodes ``0..n_nodes-1`` with ``x``, ``y`` (km); edges with ``length_km``, ``speed_kmh``, ``road_class``.
    """
    assert n_nodes >= 4, f"n_nodes={n_nodes}: a city needs at least 4 intersections"
    rng = np.random.default_rng(seed)
    n_cols = math.ceil(math.sqrt(n_nodes))
    n_rows = math.ceil(n_nodes / n_cols)
    spacing_km = size_km / max(n_cols - 1, 1)
    noise = rng.uniform(-jitter, jitter, size=(n_nodes, 2)) * spacing_km
    arterial_rows = {round((k + 1) * (n_rows - 1) / (n_arterials + 1)) for k in range(n_arterials)}
    arterial_cols = {round((k + 1) * (n_cols - 1) / (n_arterials + 1)) for k in range(n_arterials)}

    g = nx.Graph(name=f"city-{n_nodes}-{seed}")
    for i in range(n_nodes):
        r, c = divmod(i, n_cols)
        x = min(max(c * spacing_km + noise[i, 0], 0.0), size_km)
        y = min(max(r * spacing_km + noise[i, 1], 0.0), size_km)
        g.add_node(i, x=float(x), y=float(y))

    def add(u: int, v: int, arterial: bool) -> None:
        length = math.hypot(g.nodes[u]["x"] - g.nodes[v]["x"], g.nodes[u]["y"] - g.nodes[v]["y"])
        g.add_edge(u, v, length_km=max(length, 1e-3), road_class="arterial" if arterial else "street",
                   speed_kmh=arterial_speed_kmh if arterial else street_speed_kmh)

    for i in range(n_nodes):
        r, c = divmod(i, n_cols)
        if c + 1 < n_cols and i + 1 < n_nodes:
            add(i, i + 1, r in arterial_rows)
        if i + n_cols < n_nodes:
            add(i, i + n_cols, c in arterial_cols)

    streets = [(u, v) for u, v, cls in g.edges(data="road_class") if cls == "street"]
    n_remove = int(removed_edge_fraction * len(streets))
    for k in rng.permutation(len(streets)).tolist():
        if n_remove == 0:
            break
        u, v = streets[k]
        data = g.edges[u, v]
        g.remove_edge(u, v)
        if nx.has_path(g, u, v):
            n_remove -= 1
        else:  # a bridge: keep it, the city must stay connected
            g.add_edge(u, v, **data)
    assert nx.is_connected(g)
    return g


def generate_from_config(config: RoadConfig) -> nx.Graph:
    """`generate_city` with the parameters of a `RoadConfig`."""
    return generate_city(config.n_nodes, config.size_km, config.seed, config.removed_edge_fraction,
                         config.n_arterials, config.jitter, config.street_speed_kmh, config.arterial_speed_kmh)


# ------------------------------------------------------------------------------------------------ GraphML
def _number(value, what: str, path: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ShopfloorInputError(f"{path}: {what} is {value!r}; it must be a number") from None
    if not math.isfinite(out):
        raise ShopfloorInputError(f"{path}: {what} is {value!r}; it must be a finite number")
    return out


def load_graphml(path: str | os.PathLike) -> nx.Graph:
    """Load a road graph from GraphML and check it has what the fleet needs.

    Nodes need numeric ``x`` and ``y`` (km). Edges need ``length_km`` (> 0), or ``length`` in metres as
    OSMnx writes it; ``speed_kmh`` (or OSMnx's ``speed_kph``) is optional and defaults to 30 km/h.
    Directed and multi-graphs are made undirected and simple (one-way streets count as two-way; of
    parallel edges the shortest is kept). The graph must be connected. Nodes are relabelled ``0..n-1`` in
    file order; the original id is kept in the node attribute ``name``.

    Raises
    ------
    ShopfloorInputError
        One line naming the file, what is wrong and what is allowed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ShopfloorInputError(f"{path}: no such GraphML file; give the path of an existing .graphml road graph")
    try:
        raw = nx.read_graphml(path)
    except Exception as exc:  # networkx raises several types (NetworkXError, ParseError, KeyError...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShopfloorInputError(f"{path}: not a readable GraphML file ({first}); "
                                  "write it with networkx.write_graphml or OSMnx") from None
    if raw.number_of_nodes() < 2:
        raise ShopfloorInputError(f"{path}: the graph has {raw.number_of_nodes()} nodes; a road graph needs at least 2")
    index = {node: i for i, node in enumerate(raw.nodes)}
    g = nx.Graph(name=str(raw.graph.get("name", os.path.basename(path))))
    for node, data in raw.nodes(data=True):
        for key in ("x", "y"):
            if key not in data:
                raise ShopfloorInputError(f"{path}: node {node!r} has no '{key}' attribute; "
                                          "every node needs numeric 'x' and 'y' coordinates in km")
        g.add_node(index[node], x=_number(data["x"], f"node {node!r} attribute 'x'", path),
                   y=_number(data["y"], f"node {node!r} attribute 'y'", path), name=str(node))
    for u, v, data in raw.edges(data=True):
        if "length_km" in data:
            length = _number(data["length_km"], f"edge ({u!r}, {v!r}) attribute 'length_km'", path)
        elif "length" in data:
            length = _number(data["length"], f"edge ({u!r}, {v!r}) attribute 'length' (metres)", path) / 1000.0
        else:
            raise ShopfloorInputError(f"{path}: edge ({u!r}, {v!r}) has no 'length_km' attribute; "
                                      "every edge needs 'length_km' (km) or 'length' (metres)")
        if length <= 0:
            raise ShopfloorInputError(f"{path}: edge ({u!r}, {v!r}) has length {length} km; lengths must be > 0")
        speed = data.get("speed_kmh", data.get("speed_kph", DEFAULT_SPEED_KMH))
        speed = _number(speed, f"edge ({u!r}, {v!r}) attribute 'speed_kmh'", path)
        if speed <= 0:
            raise ShopfloorInputError(f"{path}: edge ({u!r}, {v!r}) has speed {speed} km/h; speeds must be > 0")
        a, b = index[u], index[v]
        if a == b or (g.has_edge(a, b) and g.edges[a, b]["length_km"] <= length):
            continue
        g.add_edge(a, b, length_km=length, speed_kmh=speed, road_class=str(data.get("road_class", "street")))
    if not nx.is_connected(g):
        n_parts = nx.number_connected_components(g)
        raise ShopfloorInputError(f"{path}: the road graph has {n_parts} disconnected parts; "
                                  "it must be connected so every customer can be reached")
    return g


# ------------------------------------------------------------------------------------------ shortest paths
# graph -> {source: (predecessors, distances)}; weak, so a dropped graph frees its trees.
_TREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tree(graph: nx.Graph, source) -> tuple[dict, dict]:
    """Shortest-distance tree from ``source`` (Dijkstra on ``length_km``), cached per graph object."""
    trees = _TREES.setdefault(graph, {})
    if source not in trees:
        trees[source] = nx.dijkstra_predecessor_and_distance(graph, source, weight="length_km")
    return trees[source]


def distance_matrix(graph: nx.Graph, nodes: Sequence | None = None) -> np.ndarray:
    """Shortest-path distances between ``nodes`` (all nodes if None), km.

    Returns
    -------
    np.ndarray, shape = (len(nodes), len(nodes)), float64
        ``D[i, j]`` = length of the shortest road path from ``nodes[i]`` to ``nodes[j]``.
    """
    nodes = list(graph.nodes) if nodes is None else list(nodes)
    out = np.empty((len(nodes), len(nodes)))
    for i, s in enumerate(nodes):
        dist = _tree(graph, s)[1]
        out[i] = [dist[t] for t in nodes]
    return out


def travel_time_matrix(graph: nx.Graph, max_speed_kmh: float, nodes: Sequence | None = None) -> np.ndarray:
    """Driving time along the shortest-distance paths between ``nodes``, minutes.

    Each edge takes ``length_km / min(speed_kmh, max_speed_kmh)`` hours.

    Returns
    -------
    np.ndarray, shape = (len(nodes), len(nodes)), float64
    """
    assert max_speed_kmh > 0, f"max_speed_kmh={max_speed_kmh} must be > 0"
    nodes = list(graph.nodes) if nodes is None else list(nodes)
    edge_min = {}
    for u, v, data in graph.edges(data=True):
        t = 60.0 * data["length_km"] / min(data.get("speed_kmh", DEFAULT_SPEED_KMH), max_speed_kmh)
        edge_min[u, v] = edge_min[v, u] = t
    out = np.empty((len(nodes), len(nodes)))
    for i, s in enumerate(nodes):
        pred, dist = _tree(graph, s)
        time = {}
        for v in dist:  # networkx fills `dist` in the order nodes are settled, so a predecessor comes first
            p = pred[v]
            time[v] = time[p[0]] + edge_min[p[0], v] if p else 0.0
        out[i] = [time[t] for t in nodes]
    return out


def shortest_path(graph: nx.Graph, source, target) -> list:
    """The node sequence a vehicle drives from ``source`` to ``target`` (for plots)."""
    pred = _tree(graph, source)[0]
    path = [target]
    while path[-1] != source:
        path.append(pred[path[-1]][0])
    return path[::-1]


# ------------------------------------------------------------------------------------------- RoadNetwork
class RoadNetwork:
    """A road graph with integer nodes ``0..n-1``, its coordinates and all-pairs shortest paths.

    Attributes
    ----------
    graph : networkx.Graph
    n_nodes : int
    xy : np.ndarray, shape = (n_nodes, 2)
        Node positions, km.
    dist_km : np.ndarray, shape = (n_nodes, n_nodes)
        Shortest-path distance, km.
    """

    def __init__(self, graph: nx.Graph):
        assert sorted(graph.nodes) == list(range(graph.number_of_nodes())), "nodes must be 0..n-1"
        self.graph = graph
        self.n_nodes = graph.number_of_nodes()
        self.xy = np.array([[graph.nodes[i]["x"], graph.nodes[i]["y"]] for i in range(self.n_nodes)], dtype=float)
        self.dist_km = distance_matrix(graph, range(self.n_nodes))
        self._time: dict[float, np.ndarray] = {}
        self._lists: dict = {}

    def time_min(self, max_speed_kmh: float) -> np.ndarray:
        """All-pairs driving time for a vehicle of top speed ``max_speed_kmh``, minutes (cached per speed)."""
        key = float(max_speed_kmh)
        if key not in self._time:
            self._time[key] = travel_time_matrix(self.graph, key, range(self.n_nodes))
        return self._time[key]

    def dist_rows(self) -> list[list[float]]:
        """``dist_km`` as nested Python lists (fast scalar indexing in simulator hot paths; cached)."""
        if "dist" not in self._lists:
            self._lists["dist"] = self.dist_km.tolist()
        return self._lists["dist"]

    def time_rows(self, max_speed_kmh: float) -> list[list[float]]:
        """`time_min` as nested Python lists (cached per speed)."""
        key = ("time", float(max_speed_kmh))
        if key not in self._lists:
            self._lists[key] = self.time_min(max_speed_kmh).tolist()
        return self._lists[key]

    def nearest_node(self, x_km: float, y_km: float) -> int:
        return int(np.argmin((self.xy[:, 0] - x_km) ** 2 + (self.xy[:, 1] - y_km) ** 2))

    def spread_nodes(self, n: int) -> list[int]:
        """``n`` well-spread nodes: the one nearest the centre, then farthest-point picks by road distance."""
        assert 1 <= n <= self.n_nodes, f"cannot pick {n} of {self.n_nodes} nodes"
        centre = self.xy.mean(axis=0)
        picked = [self.nearest_node(*centre)]
        while len(picked) < n:
            picked.append(int(np.argmax(self.dist_km[picked].min(axis=0))))
        return picked


@functools.lru_cache(maxsize=16)
def build_road_network(config: RoadConfig) -> RoadNetwork:
    """The `RoadNetwork` a `RoadConfig` describes (cached: envs reset many times on one map)."""
    graph = load_graphml(config.graphml_path) if config.graphml_path else generate_from_config(config)
    return RoadNetwork(graph)

