"""RayWorkerGroup: one Ray actor per slot, registered methods bound as driver-side calls."""

from __future__ import annotations

import time
import uuid
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from verlvl.single_controller.decorator import DispatchMode, registered_methods
from verlvl.protocol import DataProto
from verlvl.single_controller.future import DataProtoFuture
from verlvl.single_controller.resource_pool import RayResourcePool
from verlvl.single_controller.shared_images import ImageExchange
from verlvl.single_controller.worker import (ENV_AUTO_THREADS, ENV_DIST_TIMEOUT, ENV_INIT_DIST, ENV_RENDEZVOUS,
                                             RendezvousStore)

# Every worker process gets these unless the caller overrides them. glibc's allocator otherwise hands
# big training buffers back to the OS and page-faults them in again every step (measured: ~40% of a
# CPU step); tokenizers' own threads fight the training threads.
DEFAULT_WORKER_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "TOKENIZERS_PARALLELISM": "false",
}


class WorkerError(RuntimeError):
    """A worker raised, or its process died. The message names role, rank, node and method; `cause` is
    the exception the worker raised (None when its process died)."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


class RayClassWithInitArgs:
    """A worker class and the arguments to construct it with, in each slot (veRL's name)."""

    def __init__(self, cls, *args, **kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs


class RayWorkerGroup:
    """Creates `resource_pool.world_size` actors of `ray_cls_with_init.cls`, one per slot, and binds
    each @register-ed method as `group.method(...)`, which dispatches, runs and collects."""

    def __init__(self, resource_pool: RayResourcePool, ray_cls_with_init: RayClassWithInitArgs,
                 role: str | None = None, init_distributed: bool = True, env_vars: dict[str, str] | None = None,
                 dist_timeout_s: int = 1800):
        self.resource_pool = resource_pool
        self.role = role or ray_cls_with_init.cls.__name__
        self._workers: list = []
        self._worker_info: list[dict] = []
        self._dispatch_info_cache: dict[str, tuple[list[int], list[bool]]] = {}
        self._images = ImageExchange()
        self._create_workers(ray_cls_with_init, init_distributed, env_vars or {}, dist_timeout_s)
        self._bind_methods(ray_cls_with_init.cls)

    @classmethod
    def _view(cls, parent: "RayWorkerGroup", role: str, method_prefix: str, role_cls) -> "RayWorkerGroup":
        """A group sharing `parent`'s actors whose methods are one fused role's (see colocate.py)."""
        view = cls.__new__(cls)
        view.resource_pool, view.role = parent.resource_pool, role
        view._workers, view._worker_info = parent._workers, parent._worker_info
        view._dispatch_info_cache = {}
        view._images = parent._images
        view._method_prefix = method_prefix
        view._bind_methods(role_cls)
        return view

    _method_prefix = ""

    # ---------------------------------------------------------------- creation
    def _create_workers(self, ray_cls_with_init, init_distributed, env_vars, dist_timeout_s) -> None:
        pool = self.resource_pool
        pg = pool.placement_group()
        slots = pool.slots()
        remote_cls = ray.remote(ray_cls_with_init.cls)
        group_id = f"{self.role}_{uuid.uuid4().hex[:8]}"
        store = RendezvousStore.options(name=f"{group_id}_rendezvous").remote() if init_distributed else None
        threads = ({"OMP_NUM_THREADS": str(max(1, int(pool.cpus_per_worker)))} if pool.use_gpu
                   else {ENV_AUTO_THREADS: "1"})
        base_env = {**DEFAULT_WORKER_ENV, **threads, **env_vars,
                    "WORLD_SIZE": str(pool.world_size), ENV_INIT_DIST: "1" if init_distributed else "0",
                    ENV_DIST_TIMEOUT: str(dist_timeout_s)}
        master: dict[str, str] = {}
        for slot in slots:
            env = {**base_env, "RANK": str(slot.rank), "LOCAL_RANK": str(slot.local_rank),
                   "LOCAL_WORLD_SIZE": str(slot.local_world_size), **master}
            if slot.rank == 0 and store is not None:
                env[ENV_RENDEZVOUS] = f"{group_id}_rendezvous"
            actor = remote_cls.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg,
                                                                     placement_group_bundle_index=slot.bundle_index),
                runtime_env={"env_vars": env},
                name=f"{group_id}_rank{slot.rank}",
                **pool.actor_resources(),
            ).remote(*ray_cls_with_init.args, **ray_cls_with_init.kwargs)
            self._workers.append(actor)
            if slot.rank == 0 and store is not None and pool.world_size > 1:
                addr, port = self._wait_for_master(store, actor)
                master = {"MASTER_ADDR": addr, "MASTER_PORT": str(port)}
        self._worker_info = self._wait([w._node_info.remote() for w in self._workers],
                                       list(range(len(self._workers))), "__init__")
        for info, slot in zip(self._worker_info, slots):
            info["rank"] = slot.rank
        if store is not None:
            ray.kill(store)

    def _wait_for_master(self, store, rank0, timeout_s: float = 600.0):
        """Poll the rendezvous store until rank 0 has published its address; fail fast if rank 0 dies."""
        ready_ref = rank0.__ray_ready__.remote()
        waited = 0.0
        while waited < timeout_s:
            info = ray.get(store.get.remote())
            if info is not None:
                return info
            done, _ = ray.wait([ready_ref], timeout=0.2)
            if done:
                try:
                    ray.get(done[0])
                except (RayActorError, RayTaskError) as e:
                    raise WorkerError(f"{self.role} rank 0 failed while starting: {_cause(e)}") from e
            waited += 0.2
        raise TimeoutError(f"{self.role} rank 0 did not publish its master address within {timeout_s:.0f} s")

    # ---------------------------------------------------------------- method binding
    def _bind_methods(self, cls) -> None:
        for name, info in registered_methods(cls).items():
            setattr(self, name, self._make_group_method(name, info["dispatch_mode"], info["blocking"]))

    def _make_group_method(self, name: str, mode: DispatchMode, blocking: bool):
        remote_name = self._method_prefix + name

        def group_method(*args, **kwargs):
            # images travel as object-store references: put once, fetched once per worker process
            args = tuple(self._images.share(a) if isinstance(a, DataProto) else a for a in args)
            kwargs = {k: self._images.share(v) if isinstance(v, DataProto) else v for k, v in kwargs.items()}
            plan = mode.dispatch(self, args, kwargs)
            refs = [getattr(self._workers[w], remote_name).remote(*a, **kw)
                    for w, a, kw in zip(plan.worker_indices, plan.args, plan.kwargs)]
            future = DataProtoFuture(self, name, refs, plan, mode)
            if not blocking:
                return future
            out = future.get()
            return self._images.resolve(out) if isinstance(out, DataProto) else out

        group_method.__name__ = name
        return group_method

    def _dispatch_info(self, mesh_name: str) -> tuple[list[int], list[bool]]:
        if mesh_name not in self._dispatch_info_cache:
            method = self._method_prefix + "_query_dispatch_collect_info"
            infos = self._wait([getattr(w, method).remote(mesh_name) for w in self._workers],
                               list(range(self.world_size)), "_query_dispatch_collect_info")
            self._dispatch_info_cache[mesh_name] = ([i[0] for i in infos], [i[1] for i in infos])
        return self._dispatch_info_cache[mesh_name]

    # ---------------------------------------------------------------- running
    def execute_all(self, method_name: str, *args, **kwargs) -> list:
        """Call any worker method on every worker with the same arguments (no dispatch)."""
        refs = [getattr(w, self._method_prefix + method_name).remote(*args, **kwargs) for w in self._workers]
        return self._wait(refs, list(range(self.world_size)), method_name)

    def take_compute_seconds(self) -> list[float]:
        """Per worker: seconds spent computing in registered methods since the last call."""
        return self._wait([w._take_compute_seconds.remote() for w in self._workers], list(range(self.world_size)),
                          "_take_compute_seconds")

    def _wait(self, refs: list, worker_indices: list[int], method: str, timeout_s: float | None = None) -> list:
        """ray.get that reports the first failing worker at once, instead of waiting on the others
        (which may be stuck in a collective with the dead one)."""
        index_of = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=timeout_s)
            if not ready:
                raise GetTimeoutError(f"{self.role}.{method}: no result within {timeout_s} s")
            for ref in ready:
                i = index_of[ref]
                try:
                    results[i] = ray.get(ref)
                except RayActorError as e:
                    raise WorkerError(f"{self._where(worker_indices[i])} died during {method}: {_cause(e)}") from e
                except RayTaskError as e:
                    self._raise_if_one_died(pending, index_of, worker_indices, method, consequence=(i, e))
                    raise WorkerError(f"{self._where(worker_indices[i])} raised in {method}: {_cause(e)}",
                                      e.cause) from e
        return results

    def _raise_if_one_died(self, pending: list, index_of: dict, worker_indices: list[int], method: str,
                           consequence: tuple, grace_s: float = 5.0) -> None:
        """A rank that raised may only be reacting to a peer that died (a collective's 'connection reset'):
        give the others a moment, and report a death first, since that is the cause to look at."""
        deadline = time.monotonic() + grace_s
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in ready:
                try:
                    ray.get(ref)
                except RayActorError as e:
                    i, seen = consequence
                    raise WorkerError(f"{self._where(worker_indices[index_of[ref]])} died during {method}: "
                                      f"{_cause(e)} (and so {self._where(worker_indices[i])} raised: "
                                      f"{_cause(seen)})") from e
                except RayTaskError:
                    pass

    def _where(self, worker_index: int) -> str:
        info = self._worker_info[worker_index] if worker_index < len(self._worker_info) else {}
        node = f"node {info.get('node_ip', '?')} ({str(info.get('node_id', '?'))[:12]}), pid {info.get('pid', '?')}"
        return f"worker {self.role!r} rank {worker_index} on {node}"

    # ---------------------------------------------------------------- info and teardown
    @property
    def world_size(self) -> int:
        return len(self._workers)

    @property
    def workers(self) -> list:
        return list(self._workers)

    @property
    def worker_info(self) -> list[dict]:
        """node_id, node_ip, pid, hostname and rank of each worker, in rank order."""
        return [dict(i) for i in self._worker_info]

    def shutdown(self) -> None:
        for w in self._workers:
            ray.kill(w, no_restart=True)


def _cause(error: Exception) -> str:
    text = str(error).strip()
    if isinstance(error, RayTaskError) and error.cause is not None:
        text = f"{type(error.cause).__name__}: {error.cause}"
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-6:]) if lines else type(error).__name__


