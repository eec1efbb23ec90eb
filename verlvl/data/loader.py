"""A dataloader whose position (epoch, samples consumed, seed) saves and restores for exact resume."""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from verlvl.data.collate import collate_fn as default_collate


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """The order of an epoch depends only on (seed, epoch): a resumed run sees the same order."""
    if not shuffle:
        return list(range(n))
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


class ResumableLoader:
    """Yields batches epoch after epoch. The state counts what was handed to the caller, not what
    worker processes prefetched, so state_dict() taken after any batch resumes at the next one."""

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 1,
                 drop_last: bool = True, num_workers: int = 0, collate_fn: Callable = default_collate):
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"the dataset has {len(dataset)} rows, fewer than one batch of {batch_size}; lower "
                             "data.train_batch_size or add data")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.num_workers, self.collate_fn = drop_last, num_workers, collate_fn
        self.epoch, self.position = 0, 0

    def batches_per_epoch(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch()

    def _epoch_iter(self) -> Iterator[dict]:
        order = epoch_order(len(self.dataset), self.epoch, self.seed, self.shuffle)[self.position:]
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=order, drop_last=self.drop_last,
                            num_workers=self.num_workers, collate_fn=self.collate_fn)
        for batch in loader:
            self.position += self.batch_size
            yield batch

    def __iter__(self) -> Iterator[dict]:
        """Batches to the end of the current epoch (from the restored position), then the epoch advances."""
        yield from self._epoch_iter()
        self.epoch, self.position = self.epoch + 1, 0

    def iterate_forever(self) -> Iterator[dict]:
        while True:
            yield from self

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"the checkpoint's data seed {state['seed']} differs from data.seed={self.seed}; "
                             "resume with the seed the run started with")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
