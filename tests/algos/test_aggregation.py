"""loss_agg_mode as veRL aggregates (0.6; seq-mean-token-sum-norm as >= 0.7.1), by hand: empty rows, holes in the mask, and a mini-batch split
over micro-batches and ranks giving the loss of the whole."""

import pytest
import torch

from verlvl.algos import (LOSS_AGG_MODES, LOSS_COUNT_KEYS, agg_loss, loss_counts, masked_mean, masked_var,
                          masked_whiten)

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 6.0, 7.0], [8.0, 9.0, 10.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]])  # row 2 empty, row 3 has a hole

# by hand: row token sums 6, 4, -, 18; row token means 2, 4, -, 9; tokens 6; non-empty rows 3; horizon 3
EXPECTED = {
    "token-mean": (6 + 4 + 18) / 6,
    "seq-mean-token-sum": (6 + 4 + 18) / 3,  # the empty row is not a row
    "seq-mean-token-mean": (2 + 4 + 9) / 3,
    "seq-mean-token-sum-norm": (6 + 4 + 18) / 3 / 3,  # mean over non-empty rows of row sums / horizon
}


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_each_mode_by_hand(mode):
    assert agg_loss(LOSS, MASK, mode).item() == pytest.approx(EXPECTED[mode])


def test_sum_norm_divides_by_the_given_horizon_and_the_non_empty_rows():
    """veRL >= 0.7.1 (PRs 5366 and 5417 fixed 0.6's division by the horizon alone)."""
    loss = agg_loss(LOSS, MASK, "seq-mean-token-sum-norm", loss_scale_factor=7)
    assert loss.item() == pytest.approx(28 / 3 / 7)


def test_all_rows_empty_gives_zero_not_nan():
    for mode in LOSS_AGG_MODES:
        assert agg_loss(LOSS, torch.zeros_like(MASK), mode).item() == 0.0


def test_loss_counts_count_non_empty_rows():
    assert loss_counts(MASK).tolist() == [6.0, 3.0, 4.0]
    assert LOSS_COUNT_KEYS == ("global_tokens", "global_seqs", "global_rows")


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_shares_over_micro_batches_and_ranks_give_the_whole(mode):
    """Two ranks, each with one-row micro-batches cut to their own columns (as the actor trims them):
    summing a rank's shares and averaging over ranks is the whole mini-batch's loss."""
    counts = dict(zip(LOSS_COUNT_KEYS, sum(loss_counts(MASK[i:i + 1]) for i in range(4)).tolist()))
    ranks = [[0, 2], [1, 3]]
    per_rank = []
    for rows in ranks:
        shares = []
        for i in rows:
            width = max(1, int(MASK[i].nonzero().max()) + 1) if MASK[i].any() else 1
            shares.append(agg_loss(LOSS[i:i + 1, :width], MASK[i:i + 1, :width], mode, dp_size=2,
                                   loss_scale_factor=3, **counts))
        per_rank.append(sum(shares))
    assert (sum(per_rank) / 2).item() == pytest.approx(EXPECTED[mode])


def test_dp_size_without_the_global_counts_is_refused():
    with pytest.raises(ValueError, match="global_tokens"):
        agg_loss(LOSS, MASK, "token-mean", dp_size=2)
    with pytest.raises(ValueError, match="global_seqs"):
        agg_loss(LOSS, MASK, "seq-mean-token-mean", dp_size=2, global_tokens=6.0)
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        agg_loss(LOSS, MASK, "token-sum")


def test_masked_statistics_by_hand():
    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    assert masked_mean(values, mask, axis=-1).tolist() == pytest.approx([2.0, 5.0])
    assert masked_mean(values, torch.zeros_like(mask), axis=-1).tolist() == [0.0, 0.0]
    assert masked_var(values, mask).item() == pytest.approx(4.0)  # (4 + 0 + 4) / (3 - 1)
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(8 / 3)
    assert masked_whiten(values, mask)[0, :2].tolist() == pytest.approx([-1.0, 0.0], abs=1e-6)
    assert masked_whiten(values, mask, shift_mean=False)[1, 0].item() == pytest.approx(1.0 + 3.0, abs=1e-6)
    with pytest.raises(ValueError, match="sum of the mask is one"):
        masked_var(values, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    nan_outside = torch.tensor([[1.0, float("nan")]])
    assert masked_mean(nan_outside, torch.tensor([[1, 0]])).item() == 1.0
