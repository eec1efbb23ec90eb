"""A local Ray cluster is sized so the driver and every worker slot can be placed on a small machine."""

import os

import pytest
import ray

from verlvl.single_controller import RayResourcePool
from verlvl.utils.ray_init import init_ray

pytestmark = pytest.mark.slow


def test_local_cluster_has_room_for_all_slots_on_a_small_machine(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    slots = (os.cpu_count() or 1) + 3  # more worker slots than cores
    try:
        summary = init_ray(required_cpus=slots)
        assert summary == {"nodes": 1, "cpus": float(slots), "gpus": 0}
        pool = RayResourcePool([slots], use_gpu=False)
        pool.placement_group()  # would wait forever (here: time out) if the cluster were too small
        assert len(pool.slots()) == slots
        pool.release()
        assert init_ray(required_cpus=1) == summary  # a second call keeps the running instance
    finally:
        ray.shutdown()
