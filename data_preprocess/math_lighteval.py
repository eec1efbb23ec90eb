"""Write DigitalLearningGmbH/MATH-lighteval as train/test parquet in veRL's schema (boxed answers, levels kept).

Schema from the dataset card (huggingface.co/datasets/DigitalLearningGmbH/MATH-lighteval), veRL's
examples/data_preprocess/math_dataset.py and dmmrl's dmmrl/dataset/math.py: splits train/test, columns
`problem`, `level` ('Level 1'..'Level 5', a few 'Level ?'), `type` (subject) and `solution` (worked, with
the answer in the last \\boxed{}). `--levels 3,4,5` keeps only those levels.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import (SkipReport, SkipRow, base_parser, convert_split, load_source, pick_splits,
                               require_columns, save_dir_of, verl_row, write_splits)

from verlvl.reward.scorers.math_verify_utils import last_boxed

DATA_SOURCE = "DigitalLearningGmbH/MATH-lighteval"
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
COLUMNS = ("problem", "level", "type", "solution")


def level_of(example: dict) -> int | None:
    match = re.fullmatch(r"Level (\d)", str(example.get("level") or "").strip())
    return int(match.group(1)) if match else None


def parse_problem(example: dict, levels: set[int] | None) -> tuple[str, str, int | None]:
    """(problem, boxed answer, level); SkipRow for a level outside `levels` or a solution without a box."""
    level = level_of(example)
    if levels is not None and level not in levels:
        raise SkipRow(f"level not in {sorted(levels)}", str(example.get("level")))
    answer = last_boxed(example["solution"] or "")
    if not answer:
        raise SkipRow("no \\boxed{} answer in the solution", (example["solution"] or "")[-60:])
    return example["problem"], answer, level


def row_maker(levels: set[int] | None):
    def make_row(example: dict, index: int, split: str) -> dict:
        problem, answer, level = parse_problem(example, levels)
        return verl_row(DATA_SOURCE, [{"role": "user", "content": f"{problem} {INSTRUCTION}"}], None, "math", answer,
                        {"split": split, "index": index, "answer": answer, "question": problem, "level": level,
                         "type": example["type"]})
    return make_row


def convert_math(source: dict, save_dir: str, make_row) -> dict[str, str]:
    report, out = SkipReport(), {}
    for split, data in pick_splits(source, ("train", "test"), DATA_SOURCE).items():
        require_columns(data, split, COLUMNS, f"{DATA_SOURCE} ({', '.join(COLUMNS)})")
        out[split] = convert_split(data, make_row, split, report)
    return write_splits(save_dir, out, report)


def parse_levels(text: str | None) -> set[int] | None:
    return {int(x) for x in text.split(",")} if text else None


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "math")
    parser.add_argument("--levels", default=None, help="comma-separated levels to keep, e.g. 3,4,5 (default: all)")
    args = parser.parse_args(argv)
    source = load_source(DATA_SOURCE, args.local_dataset_path, config="default")
    return convert_math(source, save_dir_of(args), row_maker(parse_levels(args.levels)))


if __name__ == "__main__":
    main()
