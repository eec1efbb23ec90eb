"""Build a generated batch (prompts + responses) the way the rollout returns it, from strings."""

import torch

from verlvl.protocol import DataProto


def generated_batch(tokenizer, responses: list[str], ground_truths: list, data_source="hiyouga/geometry3k",
                    prompt="Find x.", response_len: int = 48, extra_infos=None, images=None) -> DataProto:
    pad = tokenizer.pad_token_id
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    n = len(responses)
    prompts = torch.full((n, len(prompt_ids) + 2), pad)
    prompts[:, 2:] = torch.tensor(prompt_ids)  # left padded by two
    resp = torch.full((n, response_len), pad)
    mask = torch.zeros(n, prompts.shape[1] + response_len, dtype=torch.long)
    mask[:, 2:prompts.shape[1]] = 1
    for i, text in enumerate(responses):
        ids = tokenizer.encode(text, add_special_tokens=False)[:response_len]
        resp[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, prompts.shape[1]:prompts.shape[1] + len(ids)] = 1
    non_tensors = {"data_source": [data_source] * n,
                   "reward_model": [{"style": "rule", "ground_truth": gt} for gt in ground_truths],
                   "extra_info": extra_infos or [{"index": i} for i in range(n)]}
    if images is not None:
        non_tensors["multi_modal_data"] = [{"image": im} for im in images]
    return DataProto.from_dict({"prompts": prompts, "responses": resp, "attention_mask": mask,
                                "input_ids": torch.cat([prompts, resp], dim=1)}, non_tensors)
