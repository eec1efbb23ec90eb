"""veRL's rollout correction: IS weights, rejection masks and mismatch metrics between rollout and trainer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from verlvl.algos.masked import masked_mean, masked_sum

PREFIX = "algorithm.rollout_correction"
METRIC_PREFIX = "rollout_corr/"
SAFETY_BOUND = 20.0  # log-ratios are clamped to +-20 before exponentiating, as in veRL
IS_LEVELS = ("token", "sequence")
RS_OPTIONS = ("token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_sum_k2", "seq_sum_k3",
              "seq_mean_k1", "seq_mean_k2", "seq_mean_k3", "seq_max_k2", "seq_max_k3")
LOSS_TYPES = ("ppo_clip", "reinforce")
IS_THRESHOLD_FORMS = "a positive number (TIS cap) or a 'lower_upper' string such as '0.5_5.0' (IcePop)"


class Bounds(NamedTuple):
    """Where a statistic is kept: lower <= stat <= upper (no lower bound when None)."""

    lower: float | None
    upper: float


# ---------------------------------------------------------------------------------------------- config


def _log(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float64).log())


def _positive_float(text, key: str, forms: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be {forms}; got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{key} must be {forms}; got {text!r} (bounds must be positive)")
    return value


def parse_is_threshold(spec, key: str = f"{PREFIX}.rollout_is_threshold") -> Bounds:
    """A number is a TIS cap (lower None); 'lower_upper' zeroes weights outside [lower, upper] (IcePop)."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float, str)):
        raise ValueError(f"{key} must be {IS_THRESHOLD_FORMS}; got {spec!r}")
    if isinstance(spec, str) and "_" in spec.strip():
        lower_text, upper_text = spec.strip().split("_", 1)
        lower = _positive_float(lower_text, key, IS_THRESHOLD_FORMS)
        upper = _positive_float(upper_text, key, IS_THRESHOLD_FORMS)
        if lower > upper:
            raise ValueError(f"{key}: the lower bound must be <= the upper bound; got {spec!r}")
        return Bounds(lower, upper)
    return Bounds(None, _positive_float(spec, key, IS_THRESHOLD_FORMS))


def parse_rs_options(spec, key: str = f"{PREFIX}.rollout_rs") -> list[str]:
    """The comma-separated rejection criteria, duplicates dropped, each one of RS_OPTIONS."""
    options = [part.strip() for part in spec.split(",") if part.strip()] if isinstance(spec, str) else []
    if not options:
        raise ValueError(f"{key} must be null or a comma-separated list of {', '.join(RS_OPTIONS)}; "
                         f"got {spec!r}")
    for name in options:
        if name not in RS_OPTIONS:
            raise ValueError(f"{key}: unsupported option {name!r}; supported: {', '.join(RS_OPTIONS)}")
    return list(dict.fromkeys(options))


def _rs_bounds(option: str, text: str, key: str) -> Bounds:
    """k1 options bound the ratio pi_rollout / pi_train ('lower_upper', or 'upper' with lower = 1 / upper),
    compared in log space; k2/k3 options take one positive upper bound on the divergence."""
    if option.endswith("k1"):
        forms = f"a positive upper ratio bound or a 'lower_upper' string for {option}"
        lower_text, upper_text = text.split("_", 1) if "_" in text else (None, text)
        upper = _positive_float(upper_text, key, forms)
        lower = 1.0 / upper if lower_text is None else _positive_float(lower_text, key, forms)
        if lower > upper:
            raise ValueError(f"{key}: the bounds for {option} must have lower <= upper; got {text!r}")
        return Bounds(_log(lower), _log(upper))
    if "_" in text:
        raise ValueError(f"{key}: {option} takes a single upper bound without '_'; got {text!r}")
    return Bounds(None, _positive_float(text, key, f"a positive divergence bound for {option}"))


def parse_rs_thresholds(options: list[str], spec,
                        key: str = f"{PREFIX}.rollout_rs_threshold") -> dict[str, Bounds]:
    """One threshold shared by every option, or one per option (comma-separated, in the options' order)."""
    if spec is None or isinstance(spec, bool) or not isinstance(spec, (int, float, str)):
        raise ValueError(f"{key} must be a number or a comma-separated string of thresholds when "
                         f"rollout_rs is set; got {spec!r}")
    texts = [part.strip() for part in str(spec).split(",") if part.strip()]
    if len(texts) not in (1, len(options)):
        raise ValueError(f"{key} needs one threshold shared by all options or exactly {len(options)} "
                         f"(one per rollout_rs option); got {spec!r}")
    texts = texts * len(options) if len(texts) == 1 else texts
    return {name: _rs_bounds(name, text, key) for name, text in zip(options, texts)}


def _check_choice(values: dict, name: str, allowed: tuple, prefix: str) -> None:
    if values[name] not in allowed:
        shown = ", ".join("null" if choice is None else repr(choice) for choice in allowed)
        raise ValueError(f"{prefix}.{name} must be one of {shown}; got {values[name]!r}")


def _check_values(values: dict, prefix: str) -> None:
    """veRL's checks (it makes some only when the weights are computed) and a few more, at read time."""
    _check_choice(values, "rollout_is", (None, *IS_LEVELS), prefix)
    _check_choice(values, "loss_type", LOSS_TYPES, prefix)
    for name in ("rollout_is_batch_normalize", "bypass_mode"):
        if not isinstance(values[name], bool):
            raise ValueError(f"{prefix}.{name} must be true or false; got {values[name]!r}")
    if values["rollout_is"] is not None or values["rollout_is_threshold"] is not None:
        parse_is_threshold(values["rollout_is_threshold"], f"{prefix}.rollout_is_threshold")
    if values["rollout_rs"] is not None:
        options = parse_rs_options(values["rollout_rs"], f"{prefix}.rollout_rs")
        parse_rs_thresholds(options, values["rollout_rs_threshold"], f"{prefix}.rollout_rs_threshold")


@dataclass(frozen=True)
class RolloutCorrectionConfig:
    """algorithm.rollout_correction, with the defaults of veRL's rollout_correction.yaml."""

    rollout_is: str | None = None
    rollout_is_threshold: float | str = 2.0
    rollout_is_batch_normalize: bool = False
    rollout_rs: str | None = None
    rollout_rs_threshold: float | str | None = None
    bypass_mode: bool = False
    loss_type: str = "ppo_clip"

    def __post_init__(self):
        _check_values({f.name: getattr(self, f.name) for f in fields(self)}, PREFIX)

    @classmethod
    def from_mapping(cls, mapping: Mapping | None, prefix: str = PREFIX) -> RolloutCorrectionConfig:
        """Read the config from a dict (or DictConfig); an unknown key or a bad value names the key."""
        names = [f.name for f in fields(cls)]
        values = {name: getattr(cls, name) for name in names}
        for key, value in (mapping or {}).items():
            if key not in values:
                raise ValueError(f"unknown key {prefix}.{key}; known keys: {', '.join(names)}")
            values[key] = value
        _check_values(values, prefix)
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return self.rollout_is is not None or self.rollout_rs is not None


def bypass_old_log_probs(config: RolloutCorrectionConfig | None, has_rollout_log_probs: bool = True) -> bool:
    """veRL's bypass mode: skip recomputing old log-probs and use the rollout's (pi_old = pi_rollout). Then
    the correction runs inside the policy loss (current vs rollout log-probs), not on the driver.
    Raises when bypass is on but the rollout returned no log-probs."""
    if config is None or not config.bypass_mode:
        return False
    if not has_rollout_log_probs:
        raise ValueError(f"{PREFIX}.bypass_mode=true needs the rollout's log-probs (rollout_log_probs), "
                         "but the batch has none: make the rollout engine return them")
    return True


# ---------------------------------------------------------------------------------------------- IS weights


def _raw_is_weights(log_ratio: torch.Tensor, mask: torch.Tensor, level: str):
    """(raw weights zeroed off the mask, the log-ratio the metrics read: per token, or per row as (B, 1))."""
    if level == "token":
        return torch.exp(log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND)) * mask, log_ratio
    row_log_ratio = masked_sum(log_ratio, mask, axis=-1).unsqueeze(-1)
    weights = torch.exp(row_log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND)).expand_as(log_ratio)
    return weights * mask, row_log_ratio


def _truncate(raw: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """TIS clamps at the upper bound; IcePop (a lower bound given) zeroes the weights outside the bounds."""
    if bounds.lower is None:
        return raw.clamp(max=bounds.upper)
    return torch.where((raw >= bounds.lower) & (raw <= bounds.upper), raw, torch.zeros_like(raw))


def _masked_std(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Population std over the masked elements (0 with fewer than two), as veRL computes it."""
    if mask.sum() <= 1:
        return 0.0
    mean = masked_mean(values, mask)
    return float(torch.sqrt((masked_mean(values.square(), mask) - mean.square()).clamp(min=0.0)))


def _is_metrics(weights, raw, metric_log_ratio, mask, level: str, bounds: Bounds) -> dict[str, float]:
    """veRL's compute_is_metrics, on the truncated weights before batch normalisation."""
    upper = bounds.upper
    lower = 1.0 / upper if bounds.lower is None else bounds.lower
    metrics = {"rollout_is_mean": float(masked_mean(weights, mask))}
    if level == "sequence":  # one log-ratio per row, every row (an empty one counts as ratio 1)
        metrics["rollout_is_max"] = float(torch.exp(metric_log_ratio.max().clamp(max=SAFETY_BOUND)))
        metrics["rollout_is_min"] = float(torch.exp(metric_log_ratio.min()))
        metrics["rollout_is_ratio_fraction_high"] = float((metric_log_ratio > _log(upper)).float().mean())
        metrics["rollout_is_ratio_fraction_low"] = float((metric_log_ratio < _log(lower)).float().mean())
    else:
        metrics["rollout_is_ratio_fraction_high"] = float(masked_mean((raw > upper).float(), mask))
        metrics["rollout_is_ratio_fraction_low"] = float(masked_mean((raw < lower).float(), mask))
        metrics["rollout_is_max"] = float(weights.masked_fill(~mask.bool(), float("-inf")).max())
        metrics["rollout_is_min"] = float(weights.masked_fill(~mask.bool(), float("inf")).min())
    clamped = weights.clamp(min=0.0, max=upper)
    metrics["rollout_is_std"] = _masked_std(clamped, mask)
    normalised = clamped / (masked_mean(clamped, mask) + 1e-8)
    metrics["rollout_is_eff_sample_size"] = 1.0 / float(masked_mean(normalised.square(), mask))
    metrics.update(_is_row_metrics(weights, raw, mask, upper, lower))
    if bounds.lower is not None:
        outside = (raw < bounds.lower) | (raw > bounds.upper)
        metrics["rollout_is_oob_ratio"] = float(masked_mean(outside.float(), mask))
    return metrics


def _is_row_metrics(weights, raw, mask, upper: float, lower: float) -> dict[str, float]:
    """Per-row mean weights over every row (an empty row's mean is 0), as veRL reports them."""
    rows = masked_mean(weights, mask, axis=-1)
    raw_rows = masked_mean(raw, mask, axis=-1)
    return {
        "rollout_is_seq_mean": float(rows.mean()),
        "rollout_is_seq_std": float(rows.std()) if rows.numel() > 1 else 0.0,
        "rollout_is_seq_max": float(rows.max()),
        "rollout_is_seq_min": float(rows.min()),
        "rollout_is_seq_max_deviation": float((rows - 1.0).abs().max()),
        "rollout_is_seq_fraction_high": float((raw_rows > upper).float().mean()),
        "rollout_is_seq_fraction_low": float((raw_rows < lower).float().mean()),
    }


def _batch_normalize(weights: torch.Tensor, mask: torch.Tensor, level: str) -> tuple[torch.Tensor, float]:
    """Divide by the mean weight over valid tokens (token) or over the non-empty rows' weights (sequence)."""
    if level == "token":
        mean = masked_mean(weights, mask)
    else:
        rows, has_tokens = masked_mean(weights, mask, axis=-1), (mask.sum(dim=-1) > 0).to(weights.dtype)
        mean = (rows * has_tokens).sum() / has_tokens.sum().clamp_min(1e-8)
    if mean > 1e-8:
        return weights / mean, float(mean)
    return weights, 1.0


def is_weights(log_ratio: torch.Tensor, mask: torch.Tensor, config: RolloutCorrectionConfig):
    """Truncated IS weights (B, T), zero off the mask, and their metrics (veRL's names, unprefixed)."""
    bounds = parse_is_threshold(config.rollout_is_threshold)
    raw, metric_log_ratio = _raw_is_weights(log_ratio, mask, config.rollout_is)
    weights = _truncate(raw, bounds)
    metrics = _is_metrics(weights, raw, metric_log_ratio, mask, config.rollout_is, bounds)
    if config.rollout_is_batch_normalize:
        weights, metrics["rollout_is_batch_norm_factor"] = _batch_normalize(weights, mask, config.rollout_is)
    return weights.detach(), metrics


# ---------------------------------------------------------------------------------------------- rejection


def _token_divergences(log_ratio: torch.Tensor) -> dict[str, torch.Tensor]:
    """With r = pi_train / pi_rollout: k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r."""
    safe = log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND)
    return {"k1": -safe, "k2": 0.5 * safe.square(), "k3": torch.exp(safe) - 1.0 - safe}


def _row_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    top = values.masked_fill(~mask.bool(), float("-inf")).max(dim=-1).values
    return torch.where(top == float("-inf"), torch.zeros_like(top), top)


def _rs_statistic(option: str, divergences: dict, mask: torch.Tensor):
    """(the statistic per token, broadcast over the row for sequence options; the per-row one or None)."""
    level, _, estimator = option.rpartition("_")
    token = divergences[estimator]
    if level == "token":
        return token, None
    reducers = {"seq_sum": lambda v: masked_sum(v, mask, axis=-1),
                "seq_mean": lambda v: masked_mean(v, mask, axis=-1), "seq_max": lambda v: _row_max(v, mask)}
    rows = reducers[level](token)
    return rows.unsqueeze(-1).expand_as(token), rows


def _within(values: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    keep = values <= bounds.upper
    return keep if bounds.lower is None else keep & (values >= bounds.lower)


def _rs_option_metrics(prefix: str, stat, rows, mask, bounds: Bounds) -> dict[str, float]:
    """veRL's compute_rs_metrics for one option; thresholds in the statistic's space (log for k1)."""
    has_tokens = mask.sum(dim=-1) > 0
    valid = (rows if rows is not None else masked_mean(stat, mask, axis=-1))[has_tokens]
    lower = 0.0 if bounds.lower is None else bounds.lower
    metrics = {f"{prefix}_mean": float(masked_mean(stat, mask))}
    if rows is not None:
        metrics[f"{prefix}_max"], metrics[f"{prefix}_min"] = float(valid.max()), float(valid.min())
        high, low = (valid > bounds.upper).float().mean(), (valid < lower).float().mean()
    else:
        metrics[f"{prefix}_max"] = float(stat.masked_fill(~mask.bool(), float("-inf")).max())
        metrics[f"{prefix}_min"] = float(stat.masked_fill(~mask.bool(), float("inf")).min())
        high = masked_mean((stat > bounds.upper).float(), mask)
        low = masked_mean((stat < lower).float(), mask)
    metrics[f"{prefix}_fraction_high"] = float(high)
    metrics[f"{prefix}_fraction_low"] = float(low) if bounds.lower is not None else 0.0
    metrics[f"{prefix}_std"] = _masked_std(stat.clamp(min=lower, max=bounds.upper), mask)
    metrics[f"{prefix}_seq_mean"] = float(valid.mean())
    metrics[f"{prefix}_seq_std"] = float(valid.std()) if valid.numel() > 1 else 0.0
    metrics[f"{prefix}_seq_max"], metrics[f"{prefix}_seq_min"] = float(valid.max()), float(valid.min())
    metrics[f"{prefix}_seq_max_deviation"] = float(valid.abs().max())
    metrics[f"{prefix}_seq_fraction_high"] = float((valid > bounds.upper).float().mean())
    if bounds.lower is not None:
        metrics[f"{prefix}_seq_fraction_low"] = float((valid < bounds.lower).float().mean())
    return metrics


def rejection_mask(log_ratio: torch.Tensor, mask: torch.Tensor, config: RolloutCorrectionConfig):
    """The response mask with every token (token options) or row (sequence options) that fails any listed
    criterion zeroed, and veRL's rejection metrics (unprefixed)."""
    options = parse_rs_options(config.rollout_rs)
    thresholds = parse_rs_thresholds(options, config.rollout_rs_threshold)
    divergences, valid, has_tokens = _token_divergences(log_ratio), mask.bool(), mask.sum(dim=-1) > 0
    keep_all = torch.ones_like(log_ratio)
    metrics: dict[str, float] = {}
    for option in options:
        stat, rows = _rs_statistic(option, divergences, mask)
        keep = _within(stat, thresholds[option])
        keep_all = keep_all * keep.to(log_ratio.dtype)
        metrics.update(_rs_option_metrics(f"rollout_rs_{option}", stat, rows, mask, thresholds[option]))
        row_rejected = ((~keep) & valid).any(dim=-1) & has_tokens
        rejected = (~keep).to(log_ratio.dtype)
        metrics[f"rollout_rs_{option}_masked_fraction"] = float(masked_mean(rejected, mask))
        rows_rejected = row_rejected.to(log_ratio.dtype).sum() / has_tokens.to(log_ratio.dtype).sum()
        metrics[f"rollout_rs_{option}_seq_masked_fraction"] = float(rows_rejected)
    metrics["rollout_rs_masked_fraction"] = float(masked_mean(1.0 - keep_all, mask))
    metrics["rollout_rs_seq_masked_fraction"] = float(((keep_all <= 0.5) & valid).any(dim=-1).float().mean())
    return (mask * keep_all).to(mask.dtype), metrics


# ---------------------------------------------------------------------------------------------- metrics


def _offpolicy_metrics(old_log_probs, rollout_log_probs, mask) -> dict[str, float]:
    """veRL's compute_offpolicy_metrics (unprefixed); the per-row figures average over every row."""
    train_row = masked_mean(old_log_probs, mask, axis=-1)
    rollout_row = masked_mean(rollout_log_probs, mask, axis=-1)
    log_ratio = old_log_probs - rollout_log_probs
    log_ppl_diff = rollout_row - train_row
    row_log_ratio = masked_sum(log_ratio, mask, axis=-1).clamp(-SAFETY_BOUND, SAFETY_BOUND)
    token_ratio = torch.exp(log_ratio.clamp(-SAFETY_BOUND, SAFETY_BOUND))
    return {
        "training_ppl": float(torch.exp(-train_row).mean()),
        "training_log_ppl": float((-train_row).mean()),
        "kl": float(masked_mean(rollout_log_probs - old_log_probs, mask)),
        "k3_kl": float(masked_mean(torch.exp(log_ratio) - log_ratio - 1, mask)),
        "rollout_ppl": float(torch.exp(-rollout_row).mean()),
        "rollout_log_ppl": float((-rollout_row).mean()),
        "log_ppl_diff": float(log_ppl_diff.mean()),
        "log_ppl_abs_diff": float(log_ppl_diff.abs().mean()),
        "log_ppl_diff_max": float(log_ppl_diff.max()),
        "log_ppl_diff_min": float(log_ppl_diff.min()),
        "ppl_ratio": float(torch.exp(log_ppl_diff).mean()),
        "chi2_token": float(masked_mean(token_ratio.square(), mask) - 1.0),
        "chi2_seq": float(torch.exp(2.0 * row_log_ratio).mean() - 1.0),
    }


def _check_inputs(old_log_probs, rollout_log_probs, response_mask) -> None:
    if old_log_probs.shape != rollout_log_probs.shape or old_log_probs.shape != response_mask.shape:
        raise ValueError(f"old_log_probs {tuple(old_log_probs.shape)}, rollout_log_probs "
                         f"{tuple(rollout_log_probs.shape)} and response_mask {tuple(response_mask.shape)} "
                         "must have the same shape")
    if not response_mask.bool().any():
        raise ValueError("response_mask must contain at least one valid token")


def _prefixed(metrics: dict[str, float]) -> dict[str, float]:
    return {METRIC_PREFIX + key: value for key, value in metrics.items()}


@torch.no_grad()
def mismatch_metrics(old_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor,
                     response_mask: torch.Tensor) -> dict[str, float]:
    """Off-policy diagnostics between trainer and rollout log-probs (KL, PPL, chi^2), named rollout_corr/*."""
    _check_inputs(old_log_probs, rollout_log_probs, response_mask)
    return _prefixed(_offpolicy_metrics(old_log_probs, rollout_log_probs, response_mask))


@torch.no_grad()
def rollout_correction(
    old_log_probs: torch.Tensor, rollout_log_probs: torch.Tensor, response_mask: torch.Tensor,
    config: RolloutCorrectionConfig,
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, float]]:
    """(IS weights (B, T), detached, or None when rollout_is is null; the response mask after rejection
    sampling; the rollout_corr/* metrics), as veRL's compute_rollout_correction_and_rejection_mask."""
    _check_inputs(old_log_probs, rollout_log_probs, response_mask)
    log_ratio = old_log_probs - rollout_log_probs
    weights, metrics = None, {}
    if config.rollout_is is not None:
        weights, metrics = is_weights(log_ratio, response_mask, config)
    new_mask = response_mask.clone()
    if config.rollout_rs is not None:
        new_mask, rs_metrics = rejection_mask(log_ratio, response_mask, config)
        metrics.update(rs_metrics)
    metrics.update(_offpolicy_metrics(old_log_probs, rollout_log_probs, response_mask))
    return weights, new_mask, _prefixed(metrics)
