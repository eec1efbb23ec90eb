"""Loss aggregation (loss_agg_mode) over a mini-batch that may be split into micro-batches and ranks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_COUNT_KEYS = ("global_tokens", "global_seqs", "global_rows")


def loss_counts(loss_mask: torch.Tensor) -> torch.Tensor:
    """This part's [tokens, rows with at least one token, rows] (float64, on the host): summed over the
    micro-batches of a mini-batch and over the data-parallel ranks, they are agg_loss's global_* keyword
    arguments, in LOSS_COUNT_KEYS order."""
    mask = loss_mask.detach().to(torch.float64).cpu()
    return torch.stack([mask.sum(), (mask.sum(-1) > 0).to(torch.float64).sum(),
                        torch.tensor(float(mask.shape[0]), dtype=torch.float64)])


@dataclass
class MiniBatchCounts:
    """The counts of the whole mini-batch a (micro-batch) loss is part of: the global ones when given,
    else this part's own, which is right only when the part is the whole mini-batch on one rank."""

    loss_mask: torch.Tensor
    dp_size: int = 1
    global_tokens: float | None = None
    global_seqs: float | None = None
    global_rows: float | None = None
    loss_scale_factor: float | None = None

    def _given(self, name: str, local):
        value = getattr(self, name)
        if value is not None:
            return value
        if self.dp_size > 1:
            raise ValueError(f"{name} (the whole mini-batch's count over all ranks) is required when "
                             f"dp_size > 1")
        return local

    def tokens(self):
        return self._given("global_tokens", self.loss_mask.sum())

    def seqs(self):
        return self._given("global_seqs", (self.loss_mask.sum(-1) > 0).sum())

    def rows(self):
        return self._given("global_rows", self.loss_mask.shape[0])

    def horizon(self):
        """Dr.GRPO's constant normaliser; veRL's default is the (padded) response width."""
        return self.loss_scale_factor if self.loss_scale_factor is not None else self.loss_mask.shape[-1]


VERL_COUNT_NAMES = {"batch_num_tokens": "global_tokens", "global_batch_size": "global_seqs"}


def _counts(loss_mask: torch.Tensor, dp_size: int, global_batch_info: dict) -> MiniBatchCounts:
    """MiniBatchCounts from agg_loss's keywords; veRL's names (batch_num_tokens, global_batch_size) are
    read as global_tokens / global_seqs when those are not given."""
    info = dict(global_batch_info)
    for verl_name, name in VERL_COUNT_NAMES.items():
        value = info.pop(verl_name, None)
        if info.get(name) is None:
            info[name] = value
    return MiniBatchCounts(loss_mask, dp_size, **info)


def _non_empty_row_mean(per_row: torch.Tensor, row_tokens: torch.Tensor, whole: MiniBatchCounts):
    return (per_row * (row_tokens > 0)).sum() / (whole.seqs() + 1e-8)


def _token_mean(token_sums, row_tokens, whole: MiniBatchCounts):
    return token_sums.sum() / (whole.tokens() + 1e-8)


def _seq_mean_token_sum(token_sums, row_tokens, whole: MiniBatchCounts):
    return _non_empty_row_mean(token_sums, row_tokens, whole)


def _seq_mean_token_mean(token_sums, row_tokens, whole: MiniBatchCounts):
    return _non_empty_row_mean(token_sums / (row_tokens + 1e-8), row_tokens, whole)


def _seq_mean_token_sum_norm(token_sums, row_tokens, whole: MiniBatchCounts):
    # veRL >= 0.7.1 (PRs 5366, 5417): the seq-mean of row sums, then / horizon. veRL 0.6.x divided the sum
    # over all rows by the horizon only, which veRL itself later called a bug.
    return _non_empty_row_mean(token_sums, row_tokens, whole) / whole.horizon()


AGGREGATIONS = {
    "token-mean": _token_mean,  # sum over tokens / tokens
    "seq-mean-token-sum": _seq_mean_token_sum,  # mean over non-empty rows of each row's token sum
    "seq-mean-token-mean": _seq_mean_token_mean,  # mean over non-empty rows of each row's token mean
    "seq-mean-token-sum-norm": _seq_mean_token_sum_norm,  # Dr.GRPO: mean of row sums / horizon
}
LOSS_AGG_MODES = tuple(AGGREGATIONS)


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str, dp_size: int = 1,
             **global_batch_info) -> torch.Tensor:
    """Aggregate a (B, T) token loss as veRL's agg_loss does on the whole mini-batch (AGGREGATIONS).

    global_batch_info: global_tokens, global_seqs, global_rows (the mini-batch's counts over all
    micro-batches and ranks, see loss_counts) and loss_scale_factor (seq-mean-token-sum-norm's horizon;
    pass the untrimmed response width when micro-batches are trimmed). With them the result is this
    micro-batch's share times dp_size, so summing a rank's shares and averaging gradients over ranks
    gives the loss of the whole mini-batch computed in one place, however its rows are split."""
    aggregate = AGGREGATIONS.get(loss_agg_mode)
    if aggregate is None:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; use one of {LOSS_AGG_MODES}")
    counted = loss_mask.float()  # counts in fp32, exact however long the rows
    token_sums = (loss_mat * loss_mask.to(loss_mat.dtype)).sum(-1)
    whole = _counts(counted, dp_size, global_batch_info)
    return aggregate(token_sums, counted.sum(-1), whole) * dp_size


def row_mean(row_losses: torch.Tensor, loss_mask: torch.Tensor, dp_size: int = 1,
             **global_batch_info) -> torch.Tensor:
    """Mean of one loss per row over every row of the mini-batch, empty rows included (GMPO's torch.mean)."""
    return row_losses.sum() / _counts(loss_mask, dp_size, global_batch_info).rows() * dp_size
