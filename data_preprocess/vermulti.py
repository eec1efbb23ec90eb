"""Write VLM-Reasoner/VerMulti (LMM-R1's MGT data; `--subset geo` for MGT-Geo) as train/test parquet, images inline.

Schema from the hub repository's file list (huggingface.co/datasets/VLM-Reasoner/VerMulti:
mathv60k_message.jsonl + mathv60k_img.tar.gz, and the 15K-problem geometry subset mathv_geo_message.jsonl +
mathv_geo_img.tar.gz) and LMM-R1's README "Prepare Datasets" (github.com/TideDra/lmm-r1): each line is
{"message": <JSON string of chat messages whose user content holds {"type": "image", "image": path} and
{"type": "text"} parts>, "answer": <LaTeX answer>}. Image paths are looked up as written, under the local
copy, then by their tail inside the copy's image tarballs (read in place, no unpacking). Without
--local_dataset_path the subset's two files are fetched from the hub with huggingface_hub.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_common import ImageFinder, base_parser, convert_messages, load_source, save_dir_of

DATA_SOURCE = "VLM-Reasoner/VerMulti"
SUBSETS = {"all": ("mathv60k_message.jsonl", "mathv60k_img.tar.gz"),
           "geo": ("mathv_geo_message.jsonl", "mathv_geo_img.tar.gz")}


def local_copy(local_dataset_path: str | None, subset: str) -> Path:
    if local_dataset_path:
        return Path(local_dataset_path).expanduser()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(DATA_SOURCE, repo_type="dataset", allow_patterns=list(SUBSETS[subset])))


def main(argv=None) -> dict[str, str]:
    parser = base_parser(__doc__.splitlines()[0], "vermulti")
    parser.add_argument("--subset", choices=sorted(SUBSETS), default="all",
                        help="all: the 60K MGT-PerceReason set; geo: the 15K geometry problems of MGT-Geo")
    parser.add_argument("--test_size", type=float, default=500, help="rows (>= 1) or fraction (< 1) held out as test")
    args = parser.parse_args(argv)
    copy = local_copy(args.local_dataset_path, args.subset)
    data_file = SUBSETS[args.subset][0]
    source = load_source(DATA_SOURCE, str(copy), data_files=None if copy.is_file() else data_file)
    finder = ImageFinder(copy.parent if copy.is_file() else copy)
    return convert_messages(source, save_dir_of(args), DATA_SOURCE, args.test_size, text_only=False, finder=finder)


if __name__ == "__main__":
    main()
