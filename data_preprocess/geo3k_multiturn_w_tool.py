"""Write hiyouga/geometry3k for tool-using rollouts, as veRL's geo3k_multiturn_w_tool.py does: a system prompt asking
for the calc_geo3k_reward tool, extra_info.tools_kwargs with its create_kwargs.ground_truth, and the tool config."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from verlvl.tools.builtin import GEO3K_SCHEMA
from verlvl.tools.prompt import tool_system_prompt


def _geo3k():
    spec = importlib.util.spec_from_file_location("geo3k_preprocess", Path(__file__).with_name("geo3k.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


geo3k = _geo3k()
SYSTEM = ("You are a math expert. You are given a question and you need to solve it step by step. "
          "Reasoning step by step before any tool call. "
          "You should use the `calc_geo3k_reward` tool after step by step solving the question, "
          "before generate final answer at least once and refine your answer if necessary. ")
TOOL_CONFIG = """tools:
  - class_name: verl.tools.geo3k_tool.Geo3kTool   # verlvl.tools.builtin.Geo3kTool here
    config: {type: native}
    tool_schema:
      type: function
      function:
        name: calc_geo3k_reward
        description: A tool for calculating the reward of geo3k. (1.0 if parsed answer is correct, 0.0 if parsed answer is incorrect or not correctly parsed)
        parameters:
          type: object
          properties:
            answer: {type: string, description: The model's answer to the geo3k problem, must be a digits}
          required: [answer]
"""


def make_row(example: dict, index: int, split: str, tools_in_system: bool) -> dict:
    row = geo3k.make_row(example, index, split)  # the same problem, images, answer and instruction
    answer = row["reward_model"]["ground_truth"]
    system = tool_system_prompt([GEO3K_SCHEMA], SYSTEM) if tools_in_system else SYSTEM
    row["prompt"] = [{"role": "system", "content": system}, *row["prompt"]]
    row["extra_info"].update({"need_tools_kwargs": True,
                              "tools_kwargs": {"calc_geo3k_reward": {"create_kwargs": {"ground_truth": answer}}}})
    return row


def convert(source, save_dir: str, tools_in_system: bool = True) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, save = {}, Path(save_dir).expanduser()
    save.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        if split not in source:
            raise ValueError(f"the source has no {split!r} split (it has {list(source)}); geo3k needs train and test")
        data = source[split]
        missing = [c for c in geo3k.REQUIRED_COLUMNS if c not in data.column_names]
        if missing:
            raise ValueError(f"the {split} split lacks column(s) {missing}; it has {data.column_names}")
        rows = [make_row(example, i, split, tools_in_system) for i, example in enumerate(data)]
        out[split] = str(save / f"{split}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), out[split])
        print(f"wrote {len(rows)} rows to {out[split]}")
    (save / "tool_config.yaml").write_text(TOOL_CONFIG)
    out["tool_config"] = str(save / "tool_config.yaml")
    return out


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local_dataset_path", default=None,
                        help="a local copy (saved dataset folder or folder of parquet files) instead of the hub")
    parser.add_argument("--local_save_dir", default=os.path.join("~", "data", "geo3k_multiturn_w_tool"))
    parser.add_argument("--local_dir", default=None, help=argparse.SUPPRESS)  # veRL's older name
    parser.add_argument("--no_tools_in_system", action="store_true",
                        help="veRL's system prompt only (for chat templates that render `tools` themselves)")
    args = parser.parse_args(argv)
    return convert(geo3k.load_source(args.local_dataset_path), args.local_dir or args.local_save_dir,
                   not args.no_tools_in_system)


if __name__ == "__main__":
    main()
