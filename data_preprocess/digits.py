"""Write sunildkumar/digit-recognition (r1_vlm's task: list the 1-3 digits ascending, or sum them) as parquet.

Schema from r1_vlm's loaders (github.com/groundlight/r1_vlm: the digit_recognition dataset scripts and
DigitRecognitionEnv): splits digits_1, digits_2, digits_3 (images with that many MNIST digits), columns
`image` (an earlier revision: `image_path`, relative to the copy) and `label` (the list of digits). Each
image gives two rows as r1_vlm builds digit-recognition-r1: task 'recognition' (answer '[1, 2, 5]') and
'addition' (answer '8'), under r1_vlm's system prompt and its <think>/<answer> instruction. r1_vlm's
assistant prefill ("Let me solve this step by step.\\n<think>") is not part of a veRL prompt. The splits
are pooled and `--test_size` of the images held out (seed 42), both tasks of an image on the same side.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import (ImageFinder, SkipReport, SkipRow, base_parser, column_names, convert_with_test,
                               image_cell_to_bytes, load_source, save_dir_of, verl_row, write_splits)

DATA_SOURCE = "sunildkumar/digit-recognition"
SYSTEM_PROMPT = ("You are a helpful assistant. You first think about the reasoning process in the mind and then "
                 "provides the user with the answer.")
TASKS = {
    "recognition": ("What digits are in this image? I need the digits in a list sorted from lowest to highest. Show "
                    "your work in <think> </think> tags and return the answer in <answer> </answer> tags, for "
                    "example <answer> [1, 2, 3] </answer>."),
    "addition": ("What is the sum of the digits in this image? Show your work in <think> </think> tags and return "
                 "the answer in <answer> </answer> tags, for example <answer> 3 </answer>."),
}


def digits_of(label) -> list[int]:
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        label = [label]
    if not isinstance(label, (list, tuple)) or not 1 <= len(label) <= 3:
        raise SkipRow("label is not a list of 1-3 digits", repr(label)[:60])
    try:
        digits = [int(d) for d in label]
    except (TypeError, ValueError) as e:
        raise SkipRow("label is not a list of 1-3 digits", repr(label)[:60]) from e
    if any(not 0 <= d <= 9 for d in digits):
        raise SkipRow("label is not a list of 1-3 digits", repr(label)[:60])
    return digits


def answers(digits: list[int]) -> dict[str, str]:
    """The ground truth of each task: the sorted list as r1_vlm writes it, and the sum."""
    return {"recognition": str(sorted(digits)), "addition": str(sum(digits))}


def row_maker(tasks: list[str], finder: ImageFinder | None):
    def make_row(example: dict, index: int, split: str) -> list[dict]:
        digits = digits_of(example.get("label"))
        cell = example.get("image") if example.get("image") is not None else example.get("image_path")
        if cell is None:
            raise SkipRow("no image")
        image = image_cell_to_bytes(cell, finder)
        truth = answers(digits)
        return [verl_row(DATA_SOURCE, [{"role": "system", "content": SYSTEM_PROMPT},
                                       {"role": "user", "content": "<image>" + TASKS[task]}],
                         [image], "vision", truth[task],
                         {"split": split, "index": index, "task": task, "label": digits, "total": sum(digits),
                          "answer": truth[task]})
                for task in tasks]
    return make_row


def pooled(source: dict) -> dict:
    """train/test as they are; r1_vlm's digits_1..3 (or any other splits) as one 'all' split, in order."""
    if "train" in source and "test" in source:
        return source
    rows = []
    for split in sorted(source):
        data = source[split]
        if "label" not in column_names(data) or not {"image", "image_path"} & set(column_names(data)):
            raise ValueError(f"the {split} split has columns {column_names(data)}; expected the layout of "
                             f"{DATA_SOURCE} (image or image_path, label)")
        rows.extend(data)
    return {"all": rows}


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "digits")
    parser.add_argument("--tasks", default="recognition,addition", help="recognition, addition or both")
    parser.add_argument("--test_size", type=float, default=0.1, help="fraction (< 1) or number of images held out")
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; choose from {sorted(TASKS)}")
    source = load_source(DATA_SOURCE, args.local_dataset_path)
    root = Path(args.local_dataset_path).expanduser() if args.local_dataset_path else None
    finder = ImageFinder(root.parent if root and root.is_file() else root)
    report = SkipReport()
    splits = convert_with_test(pooled(source), row_maker(tasks, finder), report, args.test_size)
    return write_splits(save_dir_of(args), splits, report)


if __name__ == "__main__":
    main()
