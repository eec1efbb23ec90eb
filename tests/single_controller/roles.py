"""Small Worker classes used by the single-controller tests (imported inside Ray workers too)."""

import os
import signal
import time

import torch
import torch.distributed as dist

from verlvl.protocol import DataProto
from verlvl.single_controller import Dispatch, Worker, register


class EchoWorker(Worker):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    @register(Dispatch.ONE_TO_ALL)
    def whoami(self):
        return {"rank": self.rank, "world_size": self.world_size, "pid": os.getpid(),
                "dist": dist.is_initialized() and dist.get_rank(), "backend": dist.get_backend(),
                "threads": torch.get_num_threads(), "malloc": os.environ.get("MALLOC_MMAP_MAX_")}

    @register(Dispatch.DP_COMPUTE_PROTO)
    def double(self, data: DataProto) -> DataProto:
        n = len(data)
        return DataProto.from_dict(
            {"y": data.batch["x"] * 2 * self.scale, "rank": torch.full((n,), self.rank)},
            {"tag": data.non_tensor_batch["tag"]}, meta_info={"rows_seen": n})

    @register(Dispatch.DP_COMPUTE_PROTO, blocking=False)
    def add_one_async(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"x": data.batch["x"] + 1, "producer": torch.full((len(data),), self.rank)},
                                   {"tag": data.non_tensor_batch["tag"]})

    @register(Dispatch.DP_COMPUTE_PROTO)
    def fetch_count(self, data: DataProto, offset: int = 0) -> DataProto:
        return DataProto.from_dict({"x": data.batch["x"] + offset, "consumer": torch.full((len(data),), self.rank),
                                    "producer": data.batch["producer"]})

    @register(Dispatch.RANK_ZERO)
    def only_rank_zero(self, value):
        return (self.rank, value)

    @register(Dispatch.ALL_TO_ALL)
    def take(self, value):
        return (self.rank, value)

    @register(Dispatch.ONE_TO_ALL)
    def all_reduce(self, value: float) -> float:
        t = torch.tensor([value * (self.rank + 1)], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item()

    @register(Dispatch.ONE_TO_ALL)
    def boom(self):
        if self.rank == 1:
            raise ValueError(f"bad value on rank {self.rank}")
        return "ok"

    @register(Dispatch.ONE_TO_ALL)
    def die_in_collective(self):
        """Rank 1 dies while rank 0 waits for it in a barrier: the driver must not hang."""
        if self.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        dist.barrier()
        return "unreachable"

    @register(Dispatch.ONE_TO_ALL)
    def raise_before_peer_dies(self):
        """Rank 0's error arrives first, rank 1's death a moment later: the death is what gets reported."""
        if self.rank == 1:
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("Connection reset by peer")


class MeshWorker(Worker):
    """Pairs of ranks act as tensor-parallel peers: DP rank = rank // 2, only the even rank is collected."""

    def __init__(self):
        super().__init__()
        self._register_dispatch_collect_info("actor", dp_rank=self.rank // 2, is_collect=self.rank % 2 == 0)

    @register(mesh_name="actor")
    def forward(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"x": data.batch["x"], "rank": torch.full((len(data),), self.rank)})


class ActorRole(Worker):
    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr

    @register(Dispatch.ONE_TO_ALL)
    def describe(self):
        return ("actor", self.rank, self.lr, os.getpid())

    @register(Dispatch.DP_COMPUTE_PROTO)
    def compute_log_prob(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"old_log_probs": -data.batch["x"].float()})


class CriticRole(Worker):
    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self._register_dispatch_collect_info("critic", dp_rank=self.rank, is_collect=True)

    @register(Dispatch.ONE_TO_ALL)
    def describe(self):
        return ("critic", self.rank, self.value, os.getpid())

    @register(mesh_name="critic")
    def compute_values(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"values": torch.full((len(data),), self.value)})


class ImageWorker(Worker):
    """Sees its rows' images; reports how many image lists this process fetched from Ray's object store."""

    @register(Dispatch.DP_COMPUTE_PROTO)
    def image_sizes(self, data: DataProto) -> DataProto:
        sizes = [sum(im.size[0] for im in mm["image"]) for mm in data.non_tensor_batch["multi_modal_data"]]
        return DataProto.from_dict({"size": torch.tensor(sizes)}, dict(data.non_tensor_batch))

    @register(Dispatch.ONE_TO_ALL)
    def images_fetched(self) -> int:
        from verlvl.single_controller.shared_images import WORKER_EXCHANGE

        return len(WORKER_EXCHANGE._by_ref)
