"""Benchmark: a DataProto round trip through a Ray actor, against the same tensors as a plain TensorDict.

Run: `make bench` (or `python -m pytest tests/bench -s -o addopts=""`). Prints a table; asserts nothing
about time.
"""

import statistics
import time

import pytest
import ray
import torch
from tensordict import TensorDict

from verlvl.protocol import DataProto


@ray.remote(num_cpus=0)
class Echo:
    def roundtrip(self, data):
        return data


def _median_seconds(fn, repeats=7):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.parametrize("rows,seq", [(256, 2048), (1024, 4096)])
def test_dataproto_transfer_vs_tensordict(rows, seq):
    from verlvl.utils.ray_init import init_ray

    init_ray(num_cpus=2)
    tensors = {
        "input_ids": torch.randint(0, 150_000, (rows, seq)),
        "attention_mask": torch.ones(rows, seq, dtype=torch.int64),
        "old_log_probs": torch.randn(rows, seq // 2),
        "ref_log_prob": torch.randn(rows, seq // 2).to(torch.bfloat16),
    }
    megabytes = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    echo = Echo.remote()
    proto = DataProto.from_dict(tensors, {"uid": [str(i) for i in range(rows)]})
    plain = TensorDict(tensors, batch_size=[rows])
    t_proto = _median_seconds(lambda: ray.get(echo.roundtrip.remote(proto)))
    t_plain = _median_seconds(lambda: ray.get(echo.roundtrip.remote(plain)))
    print(f"\n| payload | verlvl DataProto | plain TensorDict | ratio |\n|---|---|---|---|\n"
          f"| {megabytes:.0f} MB, {rows} rows | {t_proto * 1e3:.1f} ms | {t_plain * 1e3:.1f} ms | "
          f"{t_proto / t_plain:.2f}x |")
