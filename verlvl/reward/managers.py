"""Reward managers (a registry: naive, batch, dapo, and veRL-written ones): a DataProto in, token rewards out."""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from typing import Callable

import numpy as np
import torch

from verlvl.protocol import DataProto
from verlvl.reward.function import RewardFunctionSpec
from verlvl.reward.scoring import RewardScorer, Sample, ScoreOutcome
from verlvl.utils.registry import Registry

log = logging.getLogger(__name__)
REWARD_MANAGERS = Registry("reward manager", "reward_model.reward_manager")


def register_reward_manager(name: str) -> Callable:
    return REWARD_MANAGERS.register(name)


def register(name: str) -> Callable:
    """veRL's decorator (verl.workers.reward_manager.register): a reward manager class under `name`, for
    reward_model.reward_manager=name. A different class under a taken name is refused."""

    return REWARD_MANAGERS.register_new(name)


def get_reward_manager_cls(name: str) -> type:
    return REWARD_MANAGERS.lookup(name)


class AbstractRewardManager(ABC):
    """veRL's base class for reward managers: built with (tokenizer, num_examine, compute_score,
    reward_fn_key, **kwargs), where compute_score is the reward function itself; called with
    (data, return_dict) -> the (rows, response_length) reward tensor, or {"reward_tensor": ...,
    "reward_extra_info": {name: per-row values}}."""

    @abstractmethod
    def __init__(self, tokenizer, num_examine: int, compute_score: Callable | None,
                 reward_fn_key: str = "data_source", **kwargs):
        pass

    @abstractmethod
    def __call__(self, data: DataProto, return_dict: bool = False):
        pass


BUILTIN_SCORER = RewardFunctionSpec(module="verlvl.reward.scorers", name="default_compute_score")


@register_reward_manager("naive")
class NaiveRewardManager:
    """Scores each response with the reward function (built-in scorers by data_source unless a custom
    one is given) and puts the score on the response's last valid token. veRL's constructor and
    call signature."""

    def __init__(self, tokenizer, num_examine: int = 0, compute_score: RewardFunctionSpec | RewardScorer | None = None,
                 reward_fn_key: str = "data_source", num_workers: int = 2, timeout_s: float = 10.0,
                 error_score: float = 0.0, max_response_length: int | None = None, **kwargs):
        self.tokenizer, self.num_examine, self.reward_fn_key = tokenizer, num_examine, reward_fn_key
        self.max_response_length = max_response_length
        if isinstance(compute_score, RewardScorer):
            self.scorer = compute_score
        else:
            self.scorer = RewardScorer(compute_score or BUILTIN_SCORER, num_workers=num_workers, timeout_s=timeout_s,
                                       error_score=error_score)
        self._check_form()

    def _check_form(self) -> None:
        pass

    # ---------------------------------------------------------------- samples
    def samples(self, data: DataProto) -> tuple[list[Sample], torch.Tensor]:
        prompts, responses = data.batch["prompts"], data.batch["responses"]
        prompt_len = prompts.shape[-1]
        nt = data.non_tensor_batch
        multi_turn = "__num_turns__" in nt  # the mask has holes at tool turns: the response is every real token
        if "response_mask" in data.batch.keys() and not multi_turn:
            valid = data.batch["response_mask"].sum(-1)
        else:
            valid = data.batch["attention_mask"][:, prompt_len:].sum(-1)
        out = []
        for i in range(len(data)):
            n = int(valid[i])
            response_ids = responses[i, :n].tolist()
            prompt_ids = prompts[i][data.batch["attention_mask"][i, :prompt_len].bool()].tolist()
            reward_model = nt["reward_model"][i] if "reward_model" in nt else {}
            mm = nt["multi_modal_data"][i] if "multi_modal_data" in nt else None
            out.append(Sample(
                data_source=nt[self.reward_fn_key][i] if self.reward_fn_key in nt else "unknown",
                solution_str=self.tokenizer.decode(response_ids, skip_special_tokens=True),
                ground_truth=(reward_model or {}).get("ground_truth"),
                extra_info=nt["extra_info"][i] if "extra_info" in nt else None,
                prompt=self.tokenizer.decode(prompt_ids, skip_special_tokens=False),
                images=(mm or {}).get("image") if isinstance(mm, dict) else None,
                response_length=n, response_ids=response_ids,
                uid=nt["uid"][i] if "uid" in nt else None,
                max_response_length=self.max_response_length or responses.shape[-1],
                num_turns=int(nt["__num_turns__"][i]) if multi_turn else None,
                turns=list(nt["turns"][i]) if "turns" in nt else None,
                tool_calls=list(nt["tool_calls"][i]) if "tool_calls" in nt else None,
                turn_scores=list(nt["turn_scores"][i]) if "turn_scores" in nt else None,
            ))
        return out, valid

    def adjust(self, samples: list[Sample], outcomes: list[ScoreOutcome]) -> list[ScoreOutcome]:
        """Hook for managers that shape the score (dapo)."""
        return outcomes

    # ---------------------------------------------------------------- call
    def __call__(self, data: DataProto, return_dict: bool = False):
        if "rm_scores" in data.batch.keys():  # scores from a reward model worker pass through
            scores = data.batch["rm_scores"]
            return {"reward_tensor": scores, "reward_extra_info": {}} if return_dict else scores
        samples, valid = self.samples(data)
        outcomes = self.adjust(samples, self.scorer.score(samples))
        reward = torch.zeros(data.batch["responses"].shape, dtype=torch.float32)
        for i, outcome in enumerate(outcomes):
            reward[i, max(int(valid[i]) - 1, 0)] = outcome.score
        self._examine(samples, outcomes)
        if not return_dict:
            return reward
        return {"reward_tensor": reward, "reward_extra_info": self.extra_info(outcomes),
                "reward_metrics": reward_metrics(outcomes)}

    @staticmethod
    def extra_info(outcomes: list[ScoreOutcome]) -> dict[str, list]:
        """Per-sample values of every sub-score (veRL's reward_extra_info), NaN where a sample lacks one."""
        keys = sorted({k for o in outcomes for k in o.extras})
        info = {"score": [o.score for o in outcomes]}
        info.update({k: [o.extras.get(k, float("nan")) for o in outcomes] for k in keys})
        return info

    def _examine(self, samples: list[Sample], outcomes: list[ScoreOutcome]) -> None:
        shown: Counter = Counter()
        for s, o in zip(samples, outcomes):
            if shown[s.data_source] >= self.num_examine:
                continue
            shown[s.data_source] += 1
            log.info("[%s] response: %r | ground truth: %r | score: %s%s", s.data_source, s.solution_str[-500:],
                     s.ground_truth, o.score, f" ({o.status}: {o.error})" if o.status != "ok" else "")

    def close(self) -> None:
        self.scorer.close()


@register_reward_manager("batch")
class BatchRewardManager(NaiveRewardManager):
    """For batch reward functions: compute_score(data_sources, solution_strs, ground_truths, extra_infos)."""

    def _check_form(self) -> None:
        if not self.scorer.info.is_batch:
            raise ValueError(f"reward_manager=batch needs a batch function (data_sources, solution_strs, "
                             f"ground_truths, extra_infos, ...); {self.scorer.spec.describe()} scores one sample "
                             "at a time: use reward_manager=naive")


@register_reward_manager("dapo")
class DAPORewardManager(NaiveRewardManager):
    """DAPO's overlong buffer: responses in the last `len` tokens before max_response_length lose up to
    `penalty_factor`, linearly (overlong_buffer_cfg: enable, len, penalty_factor, log)."""

    def __init__(self, tokenizer, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source",
                 max_resp_len: int | None = None, overlong_buffer_cfg: dict | None = None, **kwargs):
        super().__init__(tokenizer, num_examine, compute_score, reward_fn_key,
                         max_response_length=max_resp_len, **kwargs)
        self.overlong = dict(overlong_buffer_cfg or {})
        if self.overlong.get("enable") and not max_resp_len:
            raise ValueError("the dapo reward manager's overlong buffer needs max_resp_len "
                             "(data.max_response_length)")

    def adjust(self, samples, outcomes):
        if not self.overlong.get("enable"):
            return outcomes
        buffer_len, factor = int(self.overlong["len"]), float(self.overlong.get("penalty_factor", 1.0))
        expected = self.max_response_length - buffer_len
        for s, o in zip(samples, outcomes):
            penalty = min(-(s.response_length - expected) / buffer_len * factor, 0.0)
            o.score += penalty
            if self.overlong.get("log", False):
                o.extras["overlong_reward"] = penalty
                o.extras["overlong"] = float(penalty < 0)
        return outcomes


def reward_metrics(outcomes: list[ScoreOutcome]) -> dict[str, float]:
    """reward/errors, reward/timeouts, the mean of every sub-score, and how often each score occurs
    when there are few distinct scores (right / wrong / no answer)."""
    metrics = {"reward/errors": float(sum(o.status == "error" for o in outcomes)),
               "reward/timeouts": float(sum(o.status == "timeout" for o in outcomes))}
    by_key = defaultdict(list)
    for o in outcomes:
        for k, v in o.extras.items():
            by_key[k].append(v)
    for k, values in by_key.items():
        metrics[f"reward/{k}/mean"] = float(np.mean(values))
    counts = Counter(round(o.score, 4) for o in outcomes)
    if len(counts) <= 8:
        for value, count in counts.items():
            metrics[f"reward/outcome/{value:g}"] = float(count)
    return metrics


class VerlRewardManager:
    """A reward manager written for veRL, answering as verlvl's own do: return_dict gives reward_tensor,
    reward_extra_info (with each row's `score`, the sum of its token rewards, when the manager gives none,
    which validation reports) and reward_metrics; close() exists."""

    def __init__(self, manager):
        self.manager = manager

    def __call__(self, data: DataProto, return_dict: bool = False):
        out = self.manager(data, return_dict=return_dict)
        if not return_dict:
            return out["reward_tensor"] if isinstance(out, dict) else out
        out = out if isinstance(out, dict) else {"reward_tensor": out}
        extra = {k: list(v) for k, v in (out.get("reward_extra_info") or {}).items()}
        extra.setdefault("score", out["reward_tensor"].sum(-1).tolist())
        return {"reward_tensor": out["reward_tensor"], "reward_extra_info": extra,
                "reward_metrics": dict(out.get("reward_metrics") or {})}

    def close(self) -> None:
        close = getattr(self.manager, "close", None)
        if callable(close):
            close()


def build_reward_manager(name: str, tokenizer, compute_score: RewardFunctionSpec | None, **kwargs):
    """reward_model.reward_manager=name. verlvl's managers take the spec and kwargs (scoring processes,
    timeout, ...); a manager written for veRL gets veRL's arguments: the reward function itself (the custom
    one with its reward_kwargs, else the built-in scorers) and reward_fn_key."""
    cls = get_reward_manager_cls(name)
    if issubclass(cls, NaiveRewardManager):
        return cls(tokenizer, num_examine=0, compute_score=compute_score, **kwargs)
    if compute_score is None:
        fn = BUILTIN_SCORER.load()
    else:
        fn = compute_score.load()
        fn = functools.partial(fn, **compute_score.reward_kwargs) if compute_score.reward_kwargs else fn
    return VerlRewardManager(cls(tokenizer=tokenizer, num_examine=0, compute_score=fn,
                                 reward_fn_key=kwargs.get("reward_fn_key", "data_source")))
