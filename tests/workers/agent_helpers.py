"""Scripted turns for agent-loop tests: the real tiny model runs, a logits processor forces the text of each turn."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from verlvl.data.collate import collate_to_dataproto
from verlvl.data.config import DataConfig
from verlvl.data.rl_dataset import RLDataset


class ScriptedTurns(LogitsProcessor):
    """Forces turn k of every row to `scripts[k]` (text) then the turn end; past the scripts, the turn end at once.
    The turn of a row is read from its tokens: each finished round adds two <|im_start|> (tool, assistant)."""

    def __init__(self, tokenizer, scripts: list[str], prompt_headers: int = 3):
        self.scripts = [tokenizer.encode(s, add_special_tokens=False) for s in scripts]
        self.im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.prompt_headers, self.start = prompt_headers, None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        step = input_ids.shape[1] - self.start
        forced = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            headers = int((input_ids[row, :self.start] == self.im_start).sum())
            turn = (headers - self.prompt_headers) // 2
            script = self.scripts[turn] if turn < len(self.scripts) else []
            forced[row, script[step] if step < len(script) else self.end] = 0.0
        return forced


def shapes_batch(files: dict, processor, rows: int = 2, max_prompt_length: int = 128):
    """Rows of the built-in shapes task as the trainer hands them to the rollout (chat messages kept)."""
    ds = RLDataset([files["train"]], processor.tokenizer, processor,
                   DataConfig(max_prompt_length=max_prompt_length, return_raw_chat=True))
    data = collate_to_dataproto([ds[i] for i in range(rows)])
    return data
