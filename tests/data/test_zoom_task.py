"""The built-in tool task and the geo3k tool variant: veRL's multi-turn schema (tools_kwargs), tool configs that load,
and a task the tool is needed for (the zoomed corner shows the answer's colour)."""

import asyncio

import pyarrow.parquet as pq
from PIL import Image

from tests.data.test_geo3k import fabricate_hub_copy, load_script
from verlvl.data.config import DataConfig
from verlvl.data.images import decode_image
from verlvl.data.rl_dataset import RLDataset
from verlvl.data.zoom_task import COLORS, write
from verlvl.reward.scorers import default_compute_score
from verlvl.tools.config import load_tools


def test_zoom_task_needs_and_rewards_the_zoom(tmp_path, tiny_vl):
    out = write(str(tmp_path), num_train=8, num_test=4, short_prompt=True)
    rows = pq.read_table(out["train"]).to_pylist()
    (zoom,) = load_tools(out["tool_config"])
    for row in rows:
        info, truth = row["extra_info"], row["reward_model"]["ground_truth"]
        assert info["need_tools_kwargs"] and "image_zoom_in_tool" in info["tools_kwargs"]
        image = decode_image(Image.open(__import__("io").BytesIO(row["images"][0]["bytes"])), "row")
        box = [int(v) for v in row["prompt"][1]["content"].split("Zoom in on [")[1].split("]")[0].split(", ")]

        async def crop(image=image, box=box):
            instance, _ = await zoom.create(images=[image])
            return (await zoom.execute(instance, {"bbox_2d": box}))[0].image[0]

        big = asyncio.run(crop())
        counts = {name: sum(1 for p in big.get_flattened_data() if max(abs(a - b) for a, b in zip(p, rgb)) < 40)
                  for name, rgb in COLORS.items()}
        crop_colours = [name for name, n in counts.items() if n > 20]
        assert crop_colours == [truth], (counts, truth)  # the crop shows only the asked mark, large
        assert big.size == (112, 112)
    assert default_compute_score("verlvl/zoom", "look\ntool\n\nassistant\nit is " + truth, truth)["score"] == 1.0
    assert default_compute_score("verlvl/zoom", truth + "\nassistant\nno idea", truth)["score"] == 0.0
    processor, _ = tiny_vl
    ds = RLDataset([out["train"]], processor.tokenizer, processor, DataConfig(max_prompt_length=256,
                                                                              return_raw_chat=True))
    assert ds[0]["raw_prompt"][0]["role"] == "system" and len(ds) == 8


def test_geo3k_multiturn_w_tool_matches_verl(tmp_path, tiny_vl):
    script = load_script("geo3k_multiturn_w_tool")
    out = script.main(["--local_dataset_path", str(fabricate_hub_copy(tmp_path / "hub")),
                       "--local_save_dir", str(tmp_path / "out")])
    row = pq.read_table(out["train"]).to_pylist()[2]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "calc_geo3k_reward" in row["prompt"][0]["content"] and "<tools>" in row["prompt"][0]["content"]
    assert row["extra_info"]["need_tools_kwargs"] is True
    assert row["extra_info"]["tools_kwargs"]["calc_geo3k_reward"]["create_kwargs"] == {"ground_truth": "5"}
    (tool,) = load_tools(out["tool_config"])  # veRL's class name, resolved to verlvl's Geo3kTool

    async def check(answer):
        instance, _ = await tool.create(create_kwargs={"ground_truth": "5"})
        response, reward, _ = await tool.execute(instance, {"answer": answer})
        return response.text, reward

    assert asyncio.run(check("5")) == ("Current parsed answer=\\boxed{5} reward=1.0", 1.0)
    assert asyncio.run(check("7"))[1] == 0.0
    processor, _ = tiny_vl
    ds = RLDataset([out["train"]], processor.tokenizer, processor, DataConfig(max_prompt_length=2048,
                                                                              return_raw_chat=True))
    assert ds[2]["extra_info"]["tools_kwargs"]["calc_geo3k_reward"]["create_kwargs"]["ground_truth"] == "5"
