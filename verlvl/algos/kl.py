"""KL between policy and reference: token estimators, the in-reward metric, the coefficient controllers."""

from __future__ import annotations

import torch

from verlvl.algos.masked import masked_mean
from verlvl.algos.options import option


def _k1(logprob, ref_logprob):
    return logprob - ref_logprob


def _abs(logprob, ref_logprob):
    return (logprob - ref_logprob).abs()


def _k2(logprob, ref_logprob):
    return 0.5 * (logprob - ref_logprob).square()


def _k3(logprob, ref_logprob):
    """Schulman's low-variance estimator, clamped for stability as in veRL."""
    kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
    return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)


KL_ESTIMATORS = {"kl": _k1, "k1": _k1, "abs": _abs, "mse": _k2, "k2": _k2, "low_var_kl": _k3, "k3": _k3}
# a trailing "+" (k1+, k3+, low_var_kl+, ...): that value with k2's gradient (straight through), as veRL
KL_PENALTIES = tuple(KL_ESTIMATORS) + tuple(f"{name}+" for name in KL_ESTIMATORS)


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_penalty: str = "low_var_kl"):
    """Per-token KL estimate between policy and reference: kl (k1), abs, mse (k2), low_var_kl (k3); with a
    trailing "+" the value of that estimator and the unbiased gradient of k2 (veRL's straight-through)."""
    if kl_penalty not in KL_PENALTIES:
        raise ValueError(f"unknown kl penalty {kl_penalty!r}; use one of {KL_PENALTIES}")
    forward = KL_ESTIMATORS[kl_penalty.removesuffix("+")](logprob, ref_logprob)
    if not kl_penalty.endswith("+"):
        return forward
    backward = _k2(logprob, ref_logprob)
    return backward - backward.detach() + forward.detach()


def kl_in_reward_metric(kld: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The KL-in-reward metric and the adaptive controller's input: the mean over rows of each row's
    masked token mean (an empty row counts as 0), as veRL's apply_kl_penalty."""
    return masked_mean(kld, response_mask, axis=-1).mean(dim=0)


class FixedKLController:
    """A constant KL coefficient (algorithm.kl_ctrl.type=fixed)."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """The KL coefficient moves toward target_kl over `horizon` samples (Ziegler et al.)."""

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target_kl, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


def get_kl_controller(kl_ctrl) -> FixedKLController | AdaptiveKLController:
    kind = option(kl_ctrl, "type", "fixed")
    coef = option(kl_ctrl, "kl_coef", 0.001)
    if kind == "fixed":
        return FixedKLController(coef)
    if kind == "adaptive":
        horizon = option(kl_ctrl, "horizon", 10000)
        if horizon <= 0:
            raise ValueError(f"algorithm.kl_ctrl.horizon={horizon}: must be larger than 0")
        return AdaptiveKLController(coef, option(kl_ctrl, "target_kl", 0.1), horizon)
    raise ValueError(f"algorithm.kl_ctrl.type={kind!r}: use fixed or adaptive")
