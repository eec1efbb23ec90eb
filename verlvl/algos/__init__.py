"""RL algorithms as pure tensor maths with veRL's names: advantages, policy/value losses, KL, aggregation."""

from verlvl.algos import cov_losses, group_advantages, policy_losses  # noqa: F401  (fill the registries)
from verlvl.algos.advantages import ADV_ESTIMATORS, compute_advantage, get_adv_estimator_fn, register_adv_est
from verlvl.algos.aggregation import LOSS_AGG_MODES, LOSS_COUNT_KEYS, agg_loss, loss_counts, row_mean
from verlvl.algos.compat import AdvantageEstimator, ConfigView
from verlvl.algos.kl import (KL_PENALTIES, AdaptiveKLController, FixedKLController, get_kl_controller,
                             kl_in_reward_metric, kl_penalty)
from verlvl.algos.losses import (POLICY_LOSSES, call_policy_loss, clipped_value_loss, get_policy_loss_fn,
                                 register_policy_loss, truncated_is_weight)
from verlvl.algos.masked import masked_mean, masked_sum, masked_var, masked_whiten

__all__ = [
    "ADV_ESTIMATORS", "AdvantageEstimator", "ConfigView", "compute_advantage", "get_adv_estimator_fn",
    "register_adv_est",
    "LOSS_AGG_MODES", "LOSS_COUNT_KEYS", "agg_loss", "loss_counts", "row_mean",
    "KL_PENALTIES", "AdaptiveKLController", "FixedKLController", "get_kl_controller", "kl_in_reward_metric",
    "kl_penalty",
    "POLICY_LOSSES", "call_policy_loss", "clipped_value_loss", "get_policy_loss_fn", "register_policy_loss",
    "truncated_is_weight",
    "masked_mean", "masked_sum", "masked_var", "masked_whiten",
]
