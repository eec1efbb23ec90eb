"""Write derek-thomas/ScienceQA (multiple choice, optional image) as train/validation/test parquet; letter answers.

Schema from the dataset card (huggingface.co/datasets/derek-thomas/ScienceQA) and dmmrl's
dmmrl/dataset/scienceqa.py, which loads it: splits train/validation/test, columns `image` (an image or
None), `question`, `choices` (list of strings), `answer` (index into choices), `hint` (context, may be
empty), and task/grade/subject/topic/category/skill/lecture/solution. The prompt is dmmrl's (options as
'(A) ...', the letter asked for in \\boxed{}) under the R1 system prompt; the ground truth is the letter.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import (R1_SYSTEM_PROMPT, SkipReport, SkipRow, base_parser, convert_split,
                               image_cell_to_bytes, lettered_options, load_source, pick_splits,
                               require_columns, save_dir_of, verl_row, write_splits)

DATA_SOURCE = "derek-thomas/ScienceQA"
INSTRUCTION = "(Place the letter of the final selected option within \\boxed{...})."
COLUMNS = ("image", "question", "choices", "answer", "hint")
KEPT = ("grade", "subject", "topic", "category", "skill")


def make_row(example: dict, index: int, split: str) -> dict:
    choices = list(example["choices"] or [])
    if len(choices) < 2:
        raise SkipRow("fewer than two choices", repr(choices))
    try:
        answer = int(example["answer"])
    except (TypeError, ValueError) as e:
        raise SkipRow("answer is not a choice index", repr(example["answer"])) from e
    if not 0 <= answer < len(choices):
        raise SkipRow("answer index outside the choices", f"{answer} of {len(choices)}")
    letter = chr(ord("A") + answer)
    images = [image_cell_to_bytes(example["image"])] if example["image"] is not None else []
    hint = (example.get("hint") or "").strip()
    text = (f"Context: {hint}\n" if hint else "") + f"{example['question']} {INSTRUCTION}\nOptions:\n" \
        + lettered_options(choices)
    messages = [{"role": "system", "content": R1_SYSTEM_PROMPT},
                {"role": "user", "content": "<image>" * len(images) + text}]
    extra = {"split": split, "index": index, "answer": letter, "question": example["question"], "choices": choices}
    extra.update({k: example[k] for k in KEPT if k in example})
    return verl_row(DATA_SOURCE, messages, images, "science", letter, extra)


def convert(source: dict, save_dir: str) -> dict[str, str]:
    report, out = SkipReport(), {}
    for split, data in pick_splits(source, ("train", "validation", "test"), DATA_SOURCE).items():
        require_columns(data, split, COLUMNS, f"{DATA_SOURCE} ({', '.join(COLUMNS)}, ...)")
        out[split] = convert_split(data, make_row, split, report)
    return write_splits(save_dir, out, report)


def main(argv=None) -> dict[str, str]:
    args = base_parser(__doc__.splitlines()[0], "scienceqa").parse_args(argv)
    return convert(load_source(DATA_SOURCE, args.local_dataset_path), save_dir_of(args))


if __name__ == "__main__":
    main()
