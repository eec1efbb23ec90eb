#!/usr/bin/env bash
# GRPO on geo3k with Qwen2.5-VL-7B-Instruct, one node of 8 GPUs (conf/experiment/qwen25vl_7b_geo.yaml).
# Extra key=value arguments override the experiment, e.g. trainer.nnodes=2 or data.train_batch_size=256.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f ~/data/geo3k/train.parquet ] || python data_preprocess/geo3k.py --local_save_dir ~/data/geo3k
python -m verlvl.main_ppo +experiment=qwen25vl_7b_geo "$@"
