"""Write lmms-lab/MMMU (validation split, for evaluation) as parquet; `<image N>` placeholders become <image> tags.

Schema from the dataset card (huggingface.co/datasets/lmms-lab/MMMU), dmmrl's dmmrl/dataset/mmmu.py and
lmms-eval's mmmu utils: splits dev/validation/test, columns `id`, `question`, `options` (a Python-literal
list as a string, '[]' for open questions), `explanation`, `image_1`..`image_7` (image or None), `img_type`,
`answer` (a letter for multiple-choice), `topic_difficulty`, `question_type` ('multiple-choice' or 'open'),
`subfield`. Each `<image N>` in the question and options, in reading order, becomes one <image> tag and
image_N joins `images` at that place (an image cited twice is included twice, so tags and images match).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import (R1_SYSTEM_PROMPT, SkipReport, SkipRow, base_parser, convert_split,
                               image_cell_to_bytes, lettered_options, load_source, pick_splits,
                               require_columns, save_dir_of, verl_row, write_splits)

DATA_SOURCE = "lmms-lab/MMMU"
MAX_IMAGES = 7
PLACEHOLDER = re.compile(r"<image (\d+)>")
CHOICE_INSTRUCTION = "(Place the letter of the final selected option within \\boxed{...})."
OPEN_INSTRUCTION = "(Place the final answer within \\boxed{...})."
COLUMNS = ("id", "question", "options", "answer", "question_type", *(f"image_{k}" for k in range(1, MAX_IMAGES + 1)))


def parse_options(raw) -> list[str]:
    if isinstance(raw, list):
        return [str(o) for o in raw]
    try:
        options = ast.literal_eval(raw or "[]")
    except (ValueError, SyntaxError) as e:
        raise SkipRow("options are not a list literal", str(raw)[:80]) from e
    if not isinstance(options, list):
        raise SkipRow("options are not a list literal", str(raw)[:80])
    return [str(o) for o in options]


def tag_images(text: str, example: dict, images: list[dict]) -> str:
    """Replace each <image N> by <image>, appending image_N's bytes to `images` in the same order."""
    def one(match: re.Match) -> str:
        n = int(match.group(1))
        cell = example.get(f"image_{n}") if 1 <= n <= MAX_IMAGES else None
        if cell is None:
            raise SkipRow("placeholder without its image", f"<image {n}> but image_{n} is empty")
        images.append(image_cell_to_bytes(cell))
        return "<image>"

    return PLACEHOLDER.sub(one, text)


def make_row(example: dict, index: int, split: str) -> dict:
    options = parse_options(example["options"])
    is_choice = example["question_type"] == "multiple-choice"
    if is_choice and not options:
        raise SkipRow("multiple-choice question without options", str(example["id"]))
    images: list[dict] = []
    question = tag_images(example["question"], example, images)
    text = f"{question} {CHOICE_INSTRUCTION if is_choice else OPEN_INSTRUCTION}"
    if options:
        text += "\nOptions:\n" + tag_images(lettered_options(options), example, images)
    if not images:
        raise SkipRow("no <image N> placeholder", str(example["id"]))
    answer = str(example["answer"]).strip()
    if is_choice and not re.fullmatch(r"[A-Z]", answer):
        raise SkipRow("multiple-choice answer is not one letter", answer[:40])
    messages = [{"role": "system", "content": R1_SYSTEM_PROMPT}, {"role": "user", "content": text}]
    extra = {"split": split, "index": index, "id": str(example["id"]), "answer": answer,
             "question_type": str(example["question_type"]), "options": options,
             "subfield": str(example.get("subfield") or ""), "img_type": str(example.get("img_type") or ""),
             "topic_difficulty": str(example.get("topic_difficulty") or "")}
    return verl_row(DATA_SOURCE, messages, images, "multidisciplinary", answer, extra)


def convert(source: dict, save_dir: str, splits: list[str]) -> dict[str, str]:
    report, out = SkipReport(), {}
    for split, data in pick_splits(source, splits, DATA_SOURCE).items():
        require_columns(data, split, COLUMNS, f"{DATA_SOURCE} (id, question, options, answer, image_1..image_7, ...)")
        out[split] = convert_split(data, make_row, split, report)
    return write_splits(save_dir, out, report)


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "mmmu")
    parser.add_argument("--splits", default="validation", help="comma-separated splits to write (dev, validation)")
    args = parser.parse_args(argv)
    splits = args.splits.split(",")
    source = load_source(DATA_SOURCE, args.local_dataset_path, single_split=splits[0])  # a lone file is that split
    return convert(source, save_dir_of(args), splits)


if __name__ == "__main__":
    main()
