"""Images cross Ray once: the driver puts each row's images once, each worker fetches them once, and what
comes back carries the driver's own image objects."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.single_controller.roles import ImageWorker
from verlvl.protocol import DataProto
from verlvl.single_controller import RayClassWithInitArgs, RayResourcePool, RayWorkerGroup
from verlvl.single_controller.shared_images import ImageExchange, SharedImages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def batch_of(images_per_prompt, n=2):
    rows = np.empty(len(images_per_prompt) * n, dtype=object)
    dicts = [{"image": imgs} for imgs in images_per_prompt]
    rows[:] = [d for d in dicts for _ in range(n)]  # n samples of a prompt share its dict, as repeat() makes
    return DataProto.from_dict({"x": torch.arange(len(rows))}, {"multi_modal_data": rows})


def test_sharing_puts_each_image_list_once_and_resolving_gives_the_objects_back(ray_local, monkeypatch):
    import ray

    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value: puts.append(1) or real_put(value))
    images = [[Image.new("RGB", (10 + i, 8))] for i in range(3)]
    data = batch_of(images)
    exchange = ImageExchange()
    shared = exchange.share(data)
    again = exchange.share(data)
    assert len(puts) == 3  # three prompts, six rows, two calls
    assert all(isinstance(mm["image"], SharedImages) for mm in shared.non_tensor_batch["multi_modal_data"])
    assert shared.non_tensor_batch["multi_modal_data"][0] is again.non_tensor_batch["multi_modal_data"][1]
    back = exchange.resolve(again)
    assert [mm["image"] for mm in back.non_tensor_batch["multi_modal_data"]] == [im for im in images for _ in (0, 1)]
    assert back.non_tensor_batch["multi_modal_data"][0] is data.non_tensor_batch["multi_modal_data"][0]
    fresh = ImageExchange().resolve(exchange.share(data))  # another process: fetched from the store
    assert fresh.non_tensor_batch["multi_modal_data"][4]["image"][0].size == (12, 8)


def test_workers_fetch_each_prompts_images_once_over_several_calls(ray_local):
    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(ImageWorker))
    try:
        images = [[Image.new("RGB", (10 + i, 8))] for i in range(4)]
        data = batch_of(images)
        for _ in range(3):
            out = group.image_sizes(data)
            assert out.batch["size"].tolist() == [10, 10, 11, 11, 12, 12, 13, 13]
        assert group.images_fetched() == [2, 2]  # each worker: its two prompts' images, once
        assert out.non_tensor_batch["multi_modal_data"][2] is data.non_tensor_batch["multi_modal_data"][2]
    finally:
        group.shutdown()
        pool.release()
