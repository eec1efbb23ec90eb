"""Outcome advantages against a baseline from the other samples of the same prompt (rows sharing a uid):
GRPO (and Dr.GRPO), pass@k GRPO, RLOO, OPO, GPG, REINFORCE++ with baseline; as veRL computes them."""

from __future__ import annotations

import numpy as np
import torch

from verlvl.algos.advantages import register_adv_est
from verlvl.algos.masked import masked_whiten
from verlvl.algos.options import option


class Groups:
    """Rows grouped by prompt uid: per-group sums, means and stds of one value per row, back on the rows."""

    def __init__(self, index, device=None):
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        labels = np.asarray(index, dtype=object).reshape(-1)
        try:
            _, ids = np.unique(labels, return_inverse=True)
        except TypeError:  # labels of mixed types
            _, ids = np.unique(np.array([str(x) for x in labels], dtype=object), return_inverse=True)
        self.ids = torch.as_tensor(ids.reshape(-1), dtype=torch.long, device=device)
        self.n_groups = int(ids.max()) + 1 if len(ids) else 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """(G,) sum over each group's rows."""
        sums = torch.zeros(self.n_groups, dtype=values.dtype, device=values.device)
        return sums.index_add_(0, self.ids, values)

    def size(self, like: torch.Tensor) -> torch.Tensor:
        """(rows,) how many rows the row's group has."""
        return self.sum(torch.ones_like(like))[self.ids]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """(rows,) the mean of the row's group."""
        return (self.sum(values) / self.sum(torch.ones_like(values)))[self.ids]

    def std(self, values: torch.Tensor) -> torch.Tensor:
        """(rows,) the unbiased std of the row's group (torch.std's), 0 for a group of one."""
        size = self.size(values)
        square_error = self.sum((values - self.mean(values)).square())[self.ids]
        return torch.sqrt(square_error / (size - 1).clamp(min=1))

    def rows(self):
        """The row indices of each group."""
        return [torch.nonzero(self.ids == g).flatten() for g in range(self.n_groups)]


def outcome_scores(token_level_rewards: torch.Tensor) -> torch.Tensor:
    return token_level_rewards.sum(dim=-1)


@register_adv_est("grpo")
def compute_grpo_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                   norm_adv_by_std_in_grpo: bool = True, config=None, **kwargs):
    """(score - group mean) / (group std + eps) on every token; a prompt with one sample keeps its score
    (mean 0, std 1). Without the std normalisation (norm_adv_by_std_in_grpo=false) this is Dr.GRPO."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        groups = Groups(index, scores.device)
        alone = groups.size(scores) == 1
        mean = torch.where(alone, 0.0, groups.mean(scores))
        std = torch.where(alone, 1.0, groups.std(scores))
        advantage = (scores - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else scores - mean
        advantages = advantage.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("grpo_vectorized")
def compute_grpo_vectorized_outcome_advantage(token_level_rewards, response_mask, index,
                                              epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True,
                                              config=None, **kwargs):
    """GRPO as veRL's vectorised form computes it: the same, but a group's variance is floored at epsilon
    (std >= sqrt(epsilon)), so near-identical scores are not blown up."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards).float()
        groups = Groups(index, scores.device)
        alone = groups.size(scores) == 1
        mean = torch.where(alone, 0.0, groups.mean(scores))
        std = torch.where(alone, 1.0, torch.sqrt(groups.std(scores).square().clamp(min=epsilon)))
        advantage = (scores - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else scores - mean
        advantages = advantage.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("grpo_passk")
def compute_grpo_passk_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                         norm_adv_by_std_in_grpo: bool = True, config=None, **kwargs):
    """Pass@k (arXiv 2503.19595): only the best sample of each prompt gets an advantage, its score minus the
    second best (divided by the group's std + eps when config.norm_adv_by_std_in_grpo, default true)."""
    norm = option(config, "norm_adv_by_std_in_grpo", norm_adv_by_std_in_grpo)  # veRL reads the config
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        advantage = torch.zeros_like(scores)
        for rows in Groups(index, scores.device).rows():
            group = scores[rows]
            if len(rows) < 2:
                raise ValueError(f"grpo_passk needs at least 2 samples per prompt (rollout.n >= 2); a "
                                 f"prompt has {len(rows)}")
            top, top_index = torch.topk(group, 2)
            best = top[0] - top[1]
            advantage[rows[top_index[0]]] = best / (torch.std(group) + epsilon) if norm else best
        advantages = advantage.unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("rloo")
def compute_rloo_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                   config=None, **kwargs):
    """Each sample's score minus the mean of the other samples of its prompt (leave one out); a prompt with
    one sample keeps its score."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        groups = Groups(index, scores.device)
        size = groups.size(scores)
        leave_one_out = (scores - groups.mean(scores)) * size / (size - 1).clamp(min=1)
        advantages = torch.where(size > 1, leave_one_out, scores).unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("rloo_vectorized")
def compute_rloo_vectorized_outcome_advantage(token_level_rewards, response_mask, index,
                                              epsilon: float = 1e-6, config=None, **kwargs):
    """RLOO as veRL's vectorised form computes it: the same, except a prompt with one sample gets 0."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        groups = Groups(index, scores.device)
        size = groups.size(scores)
        leave_one_out = (size * scores - groups.sum(scores)[groups.ids]) / (size - 1).clamp(min=1)
        advantages = (leave_one_out * (size > 1)).unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("opo")
def compute_opo_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                  config=None, **kwargs):
    """OPO (arXiv 2505.23585): score minus the length-weighted mean score of its prompt's samples (the
    optimal baseline for a sequence-level reward); a prompt with one sample keeps its score."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        lengths = response_mask.sum(dim=-1).to(scores.dtype)
        groups = Groups(index, scores.device)
        baseline = (groups.sum(lengths * scores) / groups.sum(lengths))[groups.ids]
        baseline = torch.where(groups.size(scores) > 1, baseline, 0.0)
        advantages = (scores - baseline).unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("gpg")
def compute_gpg_outcome_advantage(token_level_rewards, response_mask, index, epsilon: float = 1e-6,
                                  f_norm: float = 1.0, alpha: float = 1.0, config=None, **kwargs):
    """GPG (arXiv 2504.02546): (score - group mean) / f_norm, scaled by rows / rows with a non-zero score
    (which replaces the `alpha` argument, as in veRL); a prompt with one sample keeps its score."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        alpha = scores.shape[0] / torch.count_nonzero(scores).clamp(min=1)
        groups = Groups(index, scores.device)
        mean = torch.where(groups.size(scores) > 1, groups.mean(scores), 0.0)
        advantages = (alpha * (scores - mean) / f_norm).unsqueeze(-1) * response_mask
    return advantages, advantages


@register_adv_est("reinforce_plus_plus_baseline")
def compute_reinforce_plus_plus_baseline_outcome_advantage(token_level_rewards, response_mask, index,
                                                           epsilon: float = 1e-6, config=None, **kwargs):
    """Score minus its prompt's group mean (0 for one sample) on every token, whitened over the batch."""
    with torch.no_grad():
        scores = outcome_scores(token_level_rewards)
        groups = Groups(index, scores.device)
        centred = scores - torch.where(groups.size(scores) > 1, groups.mean(scores), 0.0)
        broadcast = centred.unsqueeze(-1) * response_mask
        advantages = masked_whiten(broadcast, response_mask) * response_mask
    return advantages, advantages
