"""Write VLM-Reasoner/deepscaler (LMM-R1's FRE-Text data, text only) as train/test parquet in veRL's schema.

Schema from the hub repository's file list (huggingface.co/datasets/VLM-Reasoner/deepscaler: one
`deepscaler_message.jsonl`) and LMM-R1's README "Prepare Datasets" (github.com/TideDra/lmm-r1): each line
is {"message": <JSON string of OpenAI-style chat messages>, "answer": <LaTeX answer, often "$...$">}; the
system prompt asking for <think>/<answer> travels in the message. One split: `--test_size` rows are held out.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import base_parser, convert_messages, load_source, save_dir_of

DATA_SOURCE = "VLM-Reasoner/deepscaler"
DATA_FILE = "deepscaler_message.jsonl"


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "deepscaler")
    parser.add_argument("--test_size", type=float, default=500, help="rows (>= 1) or fraction (< 1) held out as test")
    args = parser.parse_args(argv)
    source = load_source(DATA_SOURCE, args.local_dataset_path, data_files=DATA_FILE)
    return convert_messages(source, save_dir_of(args), DATA_SOURCE, args.test_size, text_only=True)


if __name__ == "__main__":
    main()
