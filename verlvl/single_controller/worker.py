"""Worker: the base of every role class; knows its rank and group and joins torch.distributed."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import ray
import torch
import torch.distributed as dist

from verlvl.utils.device import get_dist_backend, is_cuda_available

# Environment variables the worker group sets for each worker process.
ENV_RENDEZVOUS = "VERLVL_RENDEZVOUS"  # name of the actor rank 0 publishes its master address to
ENV_INIT_DIST = "VERLVL_INIT_DIST"  # "1": join torch.distributed in Worker.__init__
ENV_DIST_TIMEOUT = "VERLVL_DIST_TIMEOUT_S"
ENV_AUTO_THREADS = "VERLVL_AUTO_THREADS"  # "1": torch threads = the node's cores / workers on the node


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@ray.remote(num_cpus=0)
class RendezvousStore:
    """Where rank 0 publishes MASTER_ADDR/PORT before it blocks in init_process_group, so that the
    driver can start the other ranks with them."""

    def __init__(self):
        self._info = None

    def put(self, addr: str, port: int) -> None:
        self._info = (addr, port)

    def get(self):
        return self._info


class Worker:
    """Base for role classes run by a worker group. Subclasses call super().__init__() first; after
    it, torch.distributed is initialised across the group (gloo on CPU, NCCL on GPU)."""

    def __init__(self):
        env = os.environ
        self._rank = int(env.get("RANK", 0))
        self._world_size = int(env.get("WORLD_SIZE", 1))
        self._local_rank = int(env.get("LOCAL_RANK", 0))
        self._dispatch_collect_info: dict[str, tuple[int, bool]] = {}
        if env.get(ENV_AUTO_THREADS) == "1":
            # CPU workers share the node's cores evenly: one worker of two on a 2-core machine gets one
            # thread (oversubscribed threads make every op many times slower), a lone worker gets both.
            local = max(1, int(env.get("LOCAL_WORLD_SIZE", 1)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        elif env.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, int(env["OMP_NUM_THREADS"])))
        if env.get(ENV_INIT_DIST) == "1" and not dist.is_initialized():
            self._init_distributed()

    def _init_distributed(self) -> None:
        env = os.environ
        if self._rank == 0 and not env.get("MASTER_PORT"):
            env["MASTER_ADDR"] = ray.util.get_node_ip_address()
            env["MASTER_PORT"] = str(pick_free_port())
            if env.get(ENV_RENDEZVOUS):
                store = ray.get_actor(env[ENV_RENDEZVOUS])
                ray.get(store.put.remote(env["MASTER_ADDR"], int(env["MASTER_PORT"])))
        if is_cuda_available():
            torch.cuda.set_device(0)  # Ray exposes exactly this worker's GPU(s) as cuda:0...
        dist.init_process_group(
            backend=get_dist_backend(),
            init_method=f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
            rank=self._rank,
            world_size=self._world_size,
            timeout=timedelta(seconds=int(env.get(ENV_DIST_TIMEOUT, 1800))),
        )

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def local_rank(self) -> int:
        return self._local_rank

    def get_master_addr_port(self) -> tuple[str, str]:
        return os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")

    # Called by the worker group, not by users.
    def _node_info(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "hostname": socket.gethostname()}

    def _take_compute_seconds(self) -> float:
        """Seconds spent in registered methods since the last call (and reset)."""
        from verlvl.single_controller.decorator import COMPUTE_SECONDS

        seconds, COMPUTE_SECONDS[0] = COMPUTE_SECONDS[0], 0.0
        return seconds

    def _register_dispatch_collect_info(self, mesh_name: str, dp_rank: int, is_collect: bool) -> None:
        """Declare this worker's data-parallel rank in `mesh_name` and whether its output is returned
        (one of each group of tensor/sequence-parallel peers)."""
        self._dispatch_collect_info[mesh_name] = (int(dp_rank), bool(is_collect))

    def _query_dispatch_collect_info(self, mesh_name: str) -> tuple[int, bool]:
        if mesh_name not in self._dispatch_collect_info:
            raise KeyError(f"rank {self._rank} never registered mesh {mesh_name!r}; call "
                           f"self._register_dispatch_collect_info({mesh_name!r}, dp_rank, is_collect) in __init__")
        return self._dispatch_collect_info[mesh_name]

    def _shutdown_distributed(self) -> None:
        # barrier + destroy avoids the occasional "terminate called without an active exception" at exit.
        if dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
