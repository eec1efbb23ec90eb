"""Ray worker groups on one local cluster: every dispatch mode, futures, gloo, fused roles, failures."""

import time

import pytest
import torch

from tests.single_controller.roles import ActorRole, CriticRole, EchoWorker, MeshWorker
from verlvl.protocol import DataProto
from verlvl.single_controller import (
    RayClassWithInitArgs,
    RayResourcePool,
    RayWorkerGroup,
    WorkerError,
    create_colocated_worker_groups,
)
from verlvl.single_controller.decorator import resolve_dispatch_mode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def echo_group():
    import ray

    from verlvl.utils.ray_init import init_ray

    if ray.is_initialized() and len(ray.nodes()) != 1:
        ray.shutdown()
    init_ray(num_cpus=4)
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(EchoWorker, scale=3.0))
    yield group
    group.shutdown()
    pool.release()


def data(n):
    return DataProto.from_dict({"x": torch.arange(n, dtype=torch.float32)}, {"tag": [f"t{i}" for i in range(n)]})


def test_workers_know_rank_and_join_gloo(echo_group):
    info = echo_group.whoami()
    assert [i["rank"] for i in info] == [0, 1]
    assert all(i["world_size"] == 2 and i["backend"] == "gloo" for i in info)
    assert [i["dist"] for i in info] == [0, 1]
    assert info[0]["pid"] != info[1]["pid"]
    assert all(i["threads"] == 1 and i["malloc"] == "0" for i in info)  # worker env reached the processes


def test_gloo_all_reduce_across_group(echo_group):
    # rank r contributes 2.5 * (r + 1): 2.5 + 5.0
    assert echo_group.all_reduce(2.5) == [7.5, 7.5]


def test_one_to_all_all_to_all_rank_zero(echo_group):
    assert echo_group.take(["a", "b"]) == [(0, "a"), (1, "b")]
    assert echo_group.only_rank_zero({"k": 1}) == (0, {"k": 1})
    with pytest.raises(ValueError, match="ALL_TO_ALL needs every argument to be a list of 2"):
        echo_group.take("ab!")


def test_dp_compute_proto_chunks_pads_and_concats(echo_group):
    out = echo_group.double(data(5))  # 5 rows over 2 workers: padded to 6, padding removed after
    assert len(out) == 5
    assert out.batch["y"].tolist() == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert out.batch["rank"].tolist() == [0, 0, 0, 1, 1]
    assert out.non_tensor_batch["tag"].tolist() == ["t0", "t1", "t2", "t3", "t4"]
    assert out.meta_info == {"rows_seen": 3}


def test_non_blocking_future_passes_on_without_driver_fetch(echo_group):
    future = echo_group.add_one_async(data(4))
    assert type(future).__name__ == "DataProtoFuture"
    out = echo_group.fetch_count(future, offset=10)
    assert out.batch["x"].tolist() == [11.0, 12.0, 13.0, 14.0]
    assert out.batch["producer"].tolist() == out.batch["consumer"].tolist() == [0, 0, 1, 1]
    assert future.get().batch["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    odd = echo_group.fetch_count(echo_group.add_one_async(data(3)))  # padded chunks pass on too
    assert odd.batch["x"].tolist() == [1.0, 2.0, 3.0]


def test_worker_exception_names_role_rank_node_and_method(echo_group):
    with pytest.raises(WorkerError, match=r"'EchoWorker' rank 1 on node .* raised in boom: ValueError: bad value") as e:
        echo_group.boom()
    assert isinstance(e.value.cause, ValueError) and str(e.value.cause) == "bad value on rank 1"  # the driver can act on it


def test_unknown_dispatch_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dispatch mode 'nope'"):
        resolve_dispatch_mode("nope")


def test_named_mesh_dispatch_sends_peers_the_same_chunk(ray_local):
    pool = RayResourcePool([4], use_gpu=False, cpus_per_worker=0.5)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(MeshWorker), init_distributed=False)
    try:
        out = group.forward(data(5))  # DP size 2: pad to 6, ranks 0/1 get rows 0-2, ranks 2/3 rows 3-5
        assert out.batch["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert out.batch["rank"].tolist() == [0, 0, 0, 2, 2]  # only the collected (even) ranks come back
    finally:
        group.shutdown()
        pool.release()


def test_fused_roles_share_a_process_and_keep_their_method_names(ray_local):
    pool = RayResourcePool([2], use_gpu=False)
    groups = create_colocated_worker_groups(pool, {
        "actor": RayClassWithInitArgs(ActorRole, lr=1e-3),
        "critic": RayClassWithInitArgs(CriticRole, value=0.5),
    })
    try:
        actor, critic = groups["actor"], groups["critic"]
        a, c = actor.describe(), critic.describe()
        assert [x[:3] for x in a] == [("actor", 0, 1e-3), ("actor", 1, 1e-3)]
        assert [x[:3] for x in c] == [("critic", 0, 0.5), ("critic", 1, 0.5)]
        assert [x[3] for x in a] == [x[3] for x in c]  # same processes
        batch = data(4)
        assert actor.compute_log_prob(batch).batch["old_log_probs"].tolist() == [-0.0, -1.0, -2.0, -3.0]
        assert critic.compute_values(batch).batch["values"].tolist() == [0.5] * 4
        assert not hasattr(actor, "compute_values") and not hasattr(critic, "compute_log_prob")
    finally:
        groups["actor"].shutdown()
        pool.release()


def test_dead_worker_is_reported_not_a_hang(ray_local):
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(EchoWorker), role="actor_rollout")
    node_ip = group.worker_info[1]["node_ip"]
    start = time.monotonic()
    try:
        # rank 1 is SIGKILLed while rank 0 waits for it in a gloo barrier
        with pytest.raises(WorkerError, match=rf"'actor_rollout' rank 1 on node {node_ip}.* died during "
                                              r"die_in_collective"):
            group.die_in_collective()
        assert time.monotonic() - start < 60  # generous: the point is that it returns at all
        with pytest.raises(WorkerError, match="rank 1 .* died"):
            group.whoami()  # later calls on the dead group fail fast too
    finally:
        group.shutdown()
        pool.release()


def test_a_peer_death_is_reported_before_the_error_it_caused(ray_local):
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(EchoWorker), role="actor_rollout")
    try:
        with pytest.raises(WorkerError, match=r"rank 1 .* died during raise_before_peer_dies: .*"
                                              r"\(and so worker 'actor_rollout' rank 0 .*Connection reset by peer"):
            group.raise_before_peer_dies()
    finally:
        group.shutdown()
        pool.release()


def test_pool_larger_than_cluster_is_a_clear_error(ray_local):
    with pytest.raises(RuntimeError, match=r"cannot hold 2 CPU worker slot.*it has 1 node"):
        RayResourcePool([1, 1], use_gpu=False).placement_group()
    with pytest.raises(RuntimeError, match="asks for GPUs but the Ray cluster has none"):
        RayResourcePool([1], use_gpu=True).placement_group()
