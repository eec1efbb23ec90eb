"""A user module as written for veRL (only the imports name verlvl): an estimator, a policy loss and a reward
manager registered with veRL's decorators and signatures. Each writes a marker beside this file when called."""

import os
from collections import defaultdict

import torch

from verlvl.algos import AdvantageEstimator, agg_loss, register_adv_est, register_policy_loss  # ppo.core_algos
from verlvl.protocol import DataProto  # verl
from verlvl.reward.managers import AbstractRewardManager, register  # verl.workers.reward_manager

HERE = os.path.dirname(os.path.abspath(__file__))


def mark(what: str) -> None:
    with open(os.path.join(HERE, f"called.{what}.{os.getpid()}"), "a") as f:
        f.write("1\n")


assert AdvantageEstimator.GRPO == "grpo"


@register_adv_est("user_grpo")
def compute_user_grpo_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index,
                                epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True, config=None):
    mark("adv")
    scores = token_level_rewards.sum(dim=-1)
    groups = defaultdict(list)
    for i in range(scores.shape[0]):
        groups[index[i]].append(scores[i])
    with torch.no_grad():
        for i in range(scores.shape[0]):
            group = torch.stack(groups[index[i]])
            std = group.std() if len(group) > 1 else torch.tensor(1.0)
            scores[i] = (scores[i] - group.mean()) / ((std if norm_adv_by_std_in_grpo else 1.0) + epsilon)
    advantages = scores.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_policy_loss("user_ppo")
def compute_user_policy_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                             config=None, rollout_is_weights=None):
    mark("loss")
    clip_low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    clip_high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, -20.0, 20.0))
    losses = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    if rollout_is_weights is not None:
        losses = losses * rollout_is_weights
    pg_loss = agg_loss(loss_mat=losses, loss_mask=response_mask, loss_agg_mode=loss_agg_mode,
                       **config.global_batch_info)
    return pg_loss, {"actor/pg_clipfrac": 0.0, "actor/ppo_kl": 0.0, "actor/pg_clipfrac_lower": 0.0,
                     "actor/user_loss_called": 1.0}


@register("user_manager")
class UserRewardManager(AbstractRewardManager):
    def __init__(self, tokenizer, num_examine, compute_score=None, reward_fn_key="data_source"):
        self.tokenizer, self.compute_score, self.reward_fn_key = tokenizer, compute_score, reward_fn_key

    def __call__(self, data: DataProto, return_dict: bool = False):
        mark("reward")
        reward_tensor = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        for i in range(len(data)):
            item = data[i]
            prompt_length = item.batch["prompts"].shape[-1]
            valid = int(item.batch["attention_mask"][prompt_length:].sum())
            text = self.tokenizer.decode(item.batch["responses"][:valid], skip_special_tokens=True)
            score = self.compute_score(data_source=item.non_tensor_batch[self.reward_fn_key], solution_str=text,
                                       ground_truth=item.non_tensor_batch["reward_model"]["ground_truth"],
                                       extra_info=item.non_tensor_batch.get("extra_info"))
            reward_tensor[i, max(valid - 1, 0)] = score["score"] if isinstance(score, dict) else score
        if return_dict:
            return {"reward_tensor": reward_tensor, "reward_extra_info": {}}
        return reward_tensor
