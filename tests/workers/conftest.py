"""Shared data for worker tests: a tiny model, a few shapes prompts and a mixed text/image set."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.workers.configs import ACTOR, MODEL, REF, ROLLOUT
from verlvl.data.collate import collate_to_dataproto
from verlvl.data.config import DataConfig
from verlvl.data.rl_dataset import RLDataset


def _png(color):
    buf = io.BytesIO()
    Image.new("RGB", (56, 56), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def prompts(tiny_vl, shapes_files):
    """4 image prompts from the shapes task, as the dataloader makes them."""
    processor, _ = tiny_vl
    ds = RLDataset([shapes_files["train"]], processor.tokenizer, processor, DataConfig(max_prompt_length=96))
    return collate_to_dataproto([ds[i] for i in range(4)])


@pytest.fixture(scope="session")
def mixed_prompts(tiny_vl, tmp_path_factory):
    """2 text-only rows then 2 image rows: split over 2 ranks, rank 0 sees no image at all."""
    processor, _ = tiny_vl
    rows = []
    for i, (text, images) in enumerate([("What is one plus one?", []), ("Name a colour.", []),
                                        ("<image>What colour is the shape?", [_png("red")]),
                                        ("<image>What colour is the shape?", [_png("green")])]):
        rows.append({"data_source": "verlvl/shapes", "prompt": [{"role": "user", "content": text}],
                     "images": [{"bytes": b} for b in images], "reward_model": {"ground_truth": "red"},
                     "extra_info": {"index": i}})
    path = tmp_path_factory.mktemp("mixed") / "mixed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ds = RLDataset([str(path)], processor.tokenizer, processor, DataConfig(max_prompt_length=96))
    return collate_to_dataproto([ds[i] for i in range(4)])


def actor_config(path, **actor):
    return {"model": {"path": str(path), **MODEL},
            "actor": {**ACTOR, "ppo_micro_batch_size_per_gpu": 2, "optim": {"lr": 1e-3}, "use_kl_loss": True,
                      "kl_loss_coef": 0.1, "entropy_coeff": 0.01, **actor},
            "rollout": {**ROLLOUT, "n": 2, "response_length": 8, "log_prob_micro_batch_size_per_gpu": 2},
            "ref": dict(REF)}
