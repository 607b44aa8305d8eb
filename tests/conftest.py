"""Shared fixtures: one local Ray for the whole session (starting Ray costs seconds)."""

import pytest


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from cluster.orchestrator import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()
