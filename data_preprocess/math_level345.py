"""Write LMM-R1's text-only MATH level 3-5 set (RLOO in its FRE stage) as train/test parquet with the R1 prompt.

By default DigitalLearningGmbH/MATH-lighteval filtered to levels 3, 4 and 5 (columns as in
math_lighteval.py). A local copy may instead be LMM-R1's own examples/data/mathlv345_8k_chatml.json
(github.com/TideDra/lmm-r1: a JSON list of {"message": <JSON string of chat messages>, "answer"}, the
layout of its README's "Prepare Datasets"); that file is one split, 'train' (`--test_size` holds some out).
Rows are scored by LMM-R1's rule (verlvl/reward/scorers/lmm_r1.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from math_lighteval import COLUMNS, convert_math, parse_problem
from math_lighteval import DATA_SOURCE as MATH_SOURCE
from preprocess_common import (R1_SYSTEM_PROMPT, base_parser, column_names, convert_messages, load_source,
                               save_dir_of, verl_row)

DATA_SOURCE = "lmm_r1/math_level345"
LEVELS = {3, 4, 5}


def make_row(example: dict, index: int, split: str) -> dict:
    problem, answer, level = parse_problem(example, LEVELS)
    messages = [{"role": "system", "content": R1_SYSTEM_PROMPT}, {"role": "user", "content": problem}]
    return verl_row(DATA_SOURCE, messages, None, "math", answer,
                    {"split": split, "index": index, "answer": answer, "question": problem, "level": level,
                     "type": example["type"]})


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "math_level345")
    parser.add_argument("--test_size", type=float, default=500,
                        help="for LMM-R1's JSON (one split): rows (>= 1) or fraction (< 1) held out as test")
    args = parser.parse_args(argv)
    source = load_source(MATH_SOURCE, args.local_dataset_path, config="default")
    first = next(iter(source.values()))
    if "message" in column_names(first) and not set(COLUMNS) <= set(column_names(first)):
        return convert_messages(source, save_dir_of(args), DATA_SOURCE, args.test_size, text_only=True)
    return convert_math(source, save_dir_of(args), make_row)


if __name__ == "__main__":
    main()
