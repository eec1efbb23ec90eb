"""Write openai/gsm8k (config main) as train/test parquet in veRL's schema; the answer is the number after '####'.

Schema from the dataset card (huggingface.co/datasets/openai/gsm8k) and veRL's
examples/data_preprocess/gsm8k.py: splits train/test, columns `question` and `answer` (a worked solution
ending in '#### <number>'); dmmrl trains its GSM8K GRPO runs on the same columns.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import (SkipReport, SkipRow, base_parser, convert_split, load_source, pick_splits,
                               require_columns, save_dir_of, verl_row, write_splits)

DATA_SOURCE = "openai/gsm8k"
INSTRUCTION = "Let's think step by step and output the final answer after \"####\"."
FINAL_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")


def make_row(example: dict, index: int, split: str) -> dict:
    match = FINAL_ANSWER.search(example["answer"] or "")
    if match is None:
        raise SkipRow("no '#### <number>' in the answer", (example["answer"] or "")[-60:])
    answer = match.group(1).replace(",", "")
    question = example["question"]
    return verl_row(DATA_SOURCE, [{"role": "user", "content": f"{question} {INSTRUCTION}"}], None, "math", answer,
                    {"split": split, "index": index, "answer": example["answer"], "question": question})


def convert(source: dict, save_dir: str) -> dict[str, str]:
    report, out = SkipReport(), {}
    for split, data in pick_splits(source, ("train", "test"), DATA_SOURCE).items():
        require_columns(data, split, ("question", "answer"), f"{DATA_SOURCE} (question, answer)")
        out[split] = convert_split(data, make_row, split, report)
    return write_splits(save_dir, out, report)


def main(argv=None) -> dict[str, str]:
    args = base_parser(__doc__.splitlines()[0], "gsm8k").parse_args(argv)
    return convert(load_source(DATA_SOURCE, args.local_dataset_path, config="main"), save_dir_of(args))


if __name__ == "__main__":
    main()
