"""Resource pools: Ray placement groups for worker slots (GPU bundles with CUDA, CPU bundles without)."""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

from verlvl.utils.device import is_cuda_available


@dataclass(frozen=True)
class Slot:
    """One worker slot: global rank, the bundle (= node) it lives in, and its rank on that node."""

    rank: int
    bundle_index: int
    local_rank: int
    local_world_size: int


class RayResourcePool:
    """`process_on_nodes[i]` worker slots on node i, as one placement group with one bundle per node.

    Several nodes are spread strictly (one bundle per distinct node); ranks are contiguous per node and
    ordered by node, so rank order is stable across runs. `max_colocate_count` worker groups may share
    the slots (each takes a fraction of a slot's CPU/GPU); fused roles are the usual way to colocate.
    """

    def __init__(self, process_on_nodes: list[int], use_gpu: bool | None = None, max_colocate_count: int = 1,
                 cpus_per_worker: float = 1.0, name_prefix: str = "verlvl", ready_timeout_s: float = 120.0):
        if not process_on_nodes or any(n <= 0 for n in process_on_nodes):
            raise ValueError(f"process_on_nodes must list a positive worker count per node, got {process_on_nodes}")
        self.process_on_nodes = list(process_on_nodes)
        self.use_gpu = is_cuda_available() if use_gpu is None else use_gpu
        self.max_colocate_count = max_colocate_count
        self.cpus_per_worker = cpus_per_worker
        self.name_prefix = name_prefix
        self.ready_timeout_s = ready_timeout_s
        self._pg = None
        self._bundle_order: list[int] | None = None

    @property
    def world_size(self) -> int:
        return sum(self.process_on_nodes)

    def bundles(self) -> list[dict]:
        out = []
        for n in self.process_on_nodes:
            bundle = {"CPU": n * self.cpus_per_worker}
            if self.use_gpu:
                bundle["GPU"] = n
            out.append(bundle)
        return out

    def actor_resources(self) -> dict:
        """num_cpus / num_gpus for one worker actor of one of the colocated groups."""
        res = {"num_cpus": self.cpus_per_worker / self.max_colocate_count}
        if self.use_gpu:
            res["num_gpus"] = 1.0 / self.max_colocate_count
        return res

    def placement_group(self):
        """Create the placement group on first use and wait for it, with a clear error when the
        cluster cannot hold it."""
        if self._pg is not None:
            return self._pg
        self._check_feasible()
        strategy = "STRICT_SPREAD" if len(self.process_on_nodes) > 1 else "PACK"
        pg = placement_group(self.bundles(), strategy=strategy, name=f"{self.name_prefix}_pg_{id(self):x}")
        ready, _ = ray.wait([pg.ready()], timeout=self.ready_timeout_s)
        if not ready:
            remove_placement_group(pg)
            raise TimeoutError(f"Ray could not place {self._describe()} within {self.ready_timeout_s:.0f} s; "
                               f"the cluster has {_describe_nodes()}. Lower trainer.nnodes / "
                               "trainer.n_gpus_per_node or add nodes.")
        self._pg = pg
        # Stable rank order: bundles sorted by the node they landed on (IP, then node id).
        node_of_bundle = placement_group_table(pg)["bundles_to_node_id"]
        ip_of_node = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        self._bundle_order = sorted(range(len(self.process_on_nodes)),
                                    key=lambda b: (ip_of_node.get(node_of_bundle[b], ""), node_of_bundle[b], b))
        return pg

    def slots(self) -> list[Slot]:
        self.placement_group()
        out, rank = [], 0
        for bundle in self._bundle_order:
            n = self.process_on_nodes[bundle]
            for local in range(n):
                out.append(Slot(rank=rank, bundle_index=bundle, local_rank=local, local_world_size=n))
                rank += 1
        return out

    def release(self) -> None:
        if self._pg is not None:
            remove_placement_group(self._pg)
            self._pg = None

    def _describe(self) -> str:
        kind = "GPU+CPU" if self.use_gpu else "CPU"
        return f"{self.world_size} {kind} worker slot(s) as {self.bundles()} (one bundle per node)"

    def _check_feasible(self) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        need = self.bundles()
        fits = sorted((sum(1 for n in nodes if all(n["Resources"].get(k, 0) >= v for k, v in b.items()))
                       for b in need))
        if self.use_gpu and not any(n["Resources"].get("GPU", 0) for n in nodes):
            raise RuntimeError(f"{self._describe()} asks for GPUs but the Ray cluster has none "
                               f"({_describe_nodes()}); on a CPU machine leave use_gpu unset")
        if len(need) > len(nodes) or (fits and fits[0] == 0):
            raise RuntimeError(f"the Ray cluster cannot hold {self._describe()}: it has {_describe_nodes()}. "
                               "Lower trainer.nnodes / trainer.n_gpus_per_node, or start more nodes "
                               "(ray start --address=HEAD:PORT on each).")


def _describe_nodes() -> str:
    parts = []
    for n in ray.nodes():
        if n.get("Alive"):
            r = n["Resources"]
            parts.append(f"{n['NodeManagerAddress']}: CPU={r.get('CPU', 0):g} GPU={r.get('GPU', 0):g}")
    return f"{len(parts)} node(s) [" + "; ".join(parts) + "]"
