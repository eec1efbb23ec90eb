"""PPOTrainer: the RL loop on the driver. Every model call is a method call on a worker group."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import contextmanager

import torch
from tqdm import tqdm

from verlvl.algos import ConfigView, compute_advantage, get_kl_controller, kl_in_reward_metric, kl_penalty
from verlvl.algos.rollout_correction import (RolloutCorrectionConfig, bypass_old_log_probs, mismatch_metrics,
                                             rollout_correction)
from verlvl.config.defaults import setting
from verlvl.protocol import DataProto, as_object_array
from verlvl.trainer.dumps import RunSamples
from verlvl.trainer.balance import balance_batch
from verlvl.trainer.dynamic_sampling import NotEnoughGroups, merge_rewards, metric_values, varied_groups
from verlvl.single_controller import WorkerError
from verlvl.trainer.metrics import (compute_data_metrics, compute_mismatch_metrics, compute_throughput_metrics,
                                    compute_timing_metrics, compute_vision_token_metrics)
from verlvl.trainer.multi_turn_metrics import compute_multi_turn_metrics
from verlvl.trainer.validation_metrics import validation_metrics
from verlvl.trainer.worker_metrics import reduce_worker_metrics
from verlvl.workers.rollout.base import never_sampled_ids
from verlvl.workers.rollout.token_guard import ImageTokenMismatch

log = logging.getLogger(__name__)
# What a worker's forward reads of a batch; everything else (ground truth, scores, raw prompts) stays here.
MODEL_TENSORS = ("input_ids", "attention_mask", "position_ids", "responses", "response_mask")
MODEL_NON_TENSORS = ("multi_modal_data", "multi_modal_inputs", "uid")


def for_workers(batch: DataProto, *tensors: str) -> DataProto:
    """The part of `batch` a worker call uses: the model inputs and the named tensors (if present)."""
    keys = [k for k in MODEL_TENSORS + tensors if k in batch.batch.keys()]
    return batch.select(batch_keys=keys, non_tensor_batch_keys=[k for k in MODEL_NON_TENSORS
                                                                if k in batch.non_tensor_batch])


def total_training_steps(trainer_cfg: dict, batches_per_epoch: int) -> int:
    """trainer.total_training_steps, capped by trainer.total_epochs passes over the data."""
    by_epochs = setting(trainer_cfg, "trainer.total_epochs") * batches_per_epoch
    steps = trainer_cfg.get("total_training_steps")
    return int(min(steps, by_epochs) if steps else by_epochs)


class PPOTrainer:
    def __init__(self, cfg: dict, derived, tokenizer, train_loader, val_loader, reward_fn, val_reward_fn,
                 actor_rollout_wg, critic_wg=None, tracker=None, checkpointer=None, samples: RunSamples | None = None):
        self.cfg, self.derived, self.tokenizer = cfg, derived, tokenizer
        self.train_loader, self.val_loader = train_loader, val_loader
        self.reward_fn, self.val_reward_fn = reward_fn, val_reward_fn
        self.actor_rollout_wg, self.critic_wg = actor_rollout_wg, critic_wg
        self.tracker, self.checkpointer = tracker, checkpointer
        self.samples = samples or RunSamples()  # generations on disk: for the report and the dump folders
        self.algo, self.trainer_cfg = cfg["algorithm"], cfg["trainer"]
        self.kl_ctrl = get_kl_controller(self.algo.get("kl_ctrl"))
        self.correction = RolloutCorrectionConfig.from_mapping(self.algo.get("rollout_correction"))
        self.global_step = 0
        self.never_sampled = torch.tensor(never_sampled_ids(tokenizer), dtype=torch.long)
        self.tokens_checked: set[str] = set()  # the kinds of generation the image-token guard has seen

    # ------------------------------------------------------------------ the algorithm
    def fit(self) -> dict:
        """generate -> reward -> old log-prob -> ref -> values -> advantages -> critic, actor updates -> sync
        the new weights to the rollout engine."""
        if self.checkpointer is not None:
            self.global_step = self.checkpointer.resume(self)
        total = self.total_steps()
        last = {}
        if setting(self.trainer_cfg, "trainer.val_only"):  # evaluate the model (or the resumed checkpoint) only
            last = self.validate()
            self.tracker.log(last, step=self.global_step)
            return last
        val_first = setting(self.trainer_cfg, "trainer.val_before_train")
        if self.val_loader is not None and val_first and self.global_step == 0:
            self.tracker.log(self.validate(), step=0)
        progress = tqdm(total=total, initial=self.global_step, desc="training", unit="step", dynamic_ncols=True)
        stream = self.train_loader.iterate_forever()
        while self.global_step < total:
            self.global_step += 1
            timing = {}
            self.reset_compute_counters()  # validation and checkpoints between steps are not step time
            with self.timer("step", timing):
                batch, reward, sampling_metrics = self.sample(stream, timing)
                if setting(self.trainer_cfg, "trainer.balance_batch"):  # similar token counts on every worker
                    sampling_metrics.update(balance_batch(batch, self.derived.world_size))
                with self.timer("old_log_prob", timing):
                    old_metrics = {**self.old_log_probs(batch), **self.correct_rollout(batch)}
                if self.derived.use_reference:
                    with self.timer("ref", timing):
                        batch.union(self.actor_rollout_wg.compute_ref_log_prob(for_workers(batch)))
                if self.derived.use_critic:
                    with self.timer("values", timing):
                        batch.union(self.critic_wg.compute_values(for_workers(batch)))
                with self.timer("adv", timing):
                    kl_metrics = self.apply_kl_in_reward(batch)
                    self.compute_advantage(batch)
                update_metrics = {}
                if self.derived.use_critic:
                    with self.timer("update_critic", timing):
                        update_metrics.update(self.update_critic(batch))
                if self.global_step > setting(self.trainer_cfg, "trainer.critic_warmup"):
                    with self.timer("update_actor", timing):
                        update_metrics.update(self.update_actor(batch))
                    with self.timer("weight_sync", timing):
                        self.actor_rollout_wg.sync_rollout_weights()
            metrics = {"training/global_step": self.global_step, "training/epoch": self.train_loader.epoch,
                       **self.overhead_metrics(timing), **sampling_metrics, **old_metrics, **update_metrics,
                       **kl_metrics, **reward.get("reward_metrics", {}), **self.batch_metrics(batch, timing)}
            last_step = self.global_step == total
            if self.val_loader is not None and (self.should("test_freq") or (
                    last_step and (setting(self.trainer_cfg, "trainer.test_freq") or -1) > 0)):
                metrics.update(self.validate())
            if self.checkpointer is not None and (self.should("save_freq") or (
                    last_step and setting(self.trainer_cfg, "trainer.save_final"))):
                self.checkpointer.save(self)
            self.tracker.log(metrics, step=self.global_step)
            self.keep_samples(batch, reward)
            progress.set_postfix(score=f"{metrics['critic/score/mean']:.3f}", refresh=False)
            progress.update(1)
            last = metrics
        progress.close()
        return last

    def batch_metrics(self, batch: DataProto, timing: dict) -> dict[str, float]:
        """What the step's batch says: scores, lengths, timing per token, mismatch, throughput (veRL's names)."""
        return {**compute_data_metrics(batch, self.derived.use_critic, self.cfg["data"]["max_response_length"]),
                **compute_timing_metrics(timing, batch), **compute_mismatch_metrics(batch),
                **compute_vision_token_metrics(batch, self.never_sampled), **compute_multi_turn_metrics(batch),
                **compute_throughput_metrics(batch, timing["step"], self.derived.world_size)}

    # ------------------------------------------------------------------ the steps
    def new_batch(self, batch_dict: dict, generation: int = 0) -> DataProto:
        batch = DataProto.from_single_dict(batch_dict)
        # uids name a prompt's group of samples; deterministic so that a resumed run repeats exactly
        batch.non_tensor_batch["uid"] = as_object_array([f"{self.global_step}-{generation}-{i}"
                                                         for i in range(len(batch))])
        batch.meta_info["global_step"] = self.global_step
        return batch

    def generate_and_score(self, batch_dict: dict, timing: dict, generation: int = 0) -> tuple[DataProto, dict]:
        batch = self.new_batch(batch_dict, generation)
        with self.timer("gen", timing):
            batch = self.generate(batch, "train")
        if self.algo.get("adv_estimator") == "remax":
            with self.timer("gen_max", timing):
                batch.batch["reward_baselines"] = self.greedy_baseline(batch)
        with self.timer("reward", timing):
            reward = self.reward_fn(batch, return_dict=True)
        batch.batch["token_level_scores"] = reward["reward_tensor"]
        return batch, reward

    def generate(self, batch: DataProto, kind: str) -> DataProto:
        """The rollout. The first generation of each kind (train, val), or every one with
        rollout.check_tokens=every_step, passes the image-token guard (workers/rollout/token_guard.py)."""
        mode = setting(self.cfg["actor_rollout_ref"]["rollout"], "actor_rollout_ref.rollout.check_tokens")
        if mode == "every_step" or (mode == "first_step" and kind not in self.tokens_checked):
            batch.meta_info["check_tokens"] = True
            self.tokens_checked.add(kind)
        try:
            return self.actor_rollout_wg.generate_sequences(batch)
        except WorkerError as e:
            if isinstance(e.cause, ImageTokenMismatch):
                raise ImageTokenMismatch(str(e.cause)) from None  # a data problem, said without the traceback
            raise

    def sample(self, stream, timing: dict) -> tuple[DataProto, dict, dict]:
        """One step's scored responses. With algorithm.filter_groups (DAPO's dynamic sampling): only prompt
        groups whose responses disagree on filter_groups.metric, from as many generation batches as it
        takes to keep data.train_batch_size prompts (at most filter_groups.max_num_gen_batches)."""
        groups = self.algo.get("filter_groups") or {}
        if not setting(groups, "algorithm.filter_groups.enable"):
            batch, reward = self.generate_and_score(next(stream), timing)
            return batch, reward, {}
        want = int(self.cfg["data"]["train_batch_size"])
        limit = int(setting(groups, "algorithm.filter_groups.max_num_gen_batches") or 0)
        kept, rewards, n_kept, n_seen = [], [], 0, 0
        while n_kept < want:
            if 0 < limit <= len(rewards):
                self.save_before_failing()
                raise NotEnoughGroups(
                    f"algorithm.filter_groups: {len(rewards)} generation batches (max_num_gen_batches={limit}) kept "
                    f"{n_kept} of the {want} prompts data.train_batch_size needs: every other group scored the "
                    f"same on {groups.get('metric')!r}. The data may be too hard or too easy for the model; raise "
                    "max_num_gen_batches (0: no limit) or data.gen_batch_size, or turn filter_groups off")
            batch, reward = self.generate_and_score(next(stream), timing, len(rewards))
            rows, groups_kept, groups_seen = varied_groups(batch.non_tensor_batch["uid"],
                                                           metric_values(batch, reward, groups.get("metric") or "acc"))
            n_kept, n_seen = n_kept + groups_kept, n_seen + groups_seen
            rewards.append((reward, len(batch)))
            kept += [batch[rows]] if rows else []
        per_prompt = len(batch) // groups_seen  # responses per prompt
        return DataProto.concat(kept)[:want * per_prompt], merge_rewards(rewards), {
            "train/num_gen_batches": float(len(rewards)), "train/num_prompts_dropped": float(n_seen - n_kept)}

    def save_before_failing(self) -> None:
        """Keep what the steps so far trained (the current step has not trained)."""
        if self.checkpointer is not None and self.global_step > 1:
            self.global_step -= 1
            self.checkpointer.save(self)
            self.global_step += 1

    def old_log_probs(self, batch: DataProto) -> dict[str, float]:
        """The trainer's log-probs of the sampled tokens, and the policy's entropy on them (actor/entropy,
        as veRL logs it). On-policy on CPU (one epoch, one mini-batch) they equal the rollout's own, so
        that forward pass is skipped, except every trainer.mismatch_check_freq steps, when it runs and
        training/rollout_probs_diff_* say how far apart the two really are. rollout_correction.bypass_mode
        always uses the rollout's."""
        check = setting(self.trainer_cfg, "trainer.mismatch_check_freq") or -1
        measure = check > 0 and self.global_step % check == 0  # the shortcut's premise, measured
        has_rollout = "rollout_log_probs" in batch.batch.keys()
        shortcut = self.derived.on_policy and not measure and not self.correction.enabled
        if has_rollout and (bypass_old_log_probs(self.correction, has_rollout) or shortcut):
            batch.batch["old_log_probs"] = batch.batch["rollout_log_probs"]
            batch.meta_info["old_log_probs_are_rollouts"] = True  # equal by construction: no mismatch to log
            entropy = batch.batch["rollout_entropys"] if "rollout_entropys" in batch.batch.keys() else None
            metrics = {}
        else:
            out = self.actor_rollout_wg.compute_log_prob(for_workers(batch))
            batch.union(out.select(batch_keys=["old_log_probs"]))
            entropy, metrics = out.batch["entropys"], reduce_worker_metrics(out.meta_info.get("metrics"))
        mask = batch.batch["response_mask"].bool()
        if entropy is not None and mask.any():
            metrics["actor/entropy"] = entropy[mask].float().mean().item()
        return metrics

    def correct_rollout(self, batch: DataProto) -> dict[str, float]:
        """algorithm.rollout_correction (veRL's decoupled mode): importance weights between the trainer's
        old log-probs and the rollout's (token or sequence level, truncated), rejection of tokens or
        sequences that diverge too far (the response mask loses them), and rollout_corr/* metrics,
        logged whenever both log-probs exist and differ by more than construction."""
        if "rollout_log_probs" not in batch.batch.keys() or batch.meta_info.get("old_log_probs_are_rollouts"):
            return {}
        old, rollout, mask = (batch.batch[k] for k in ("old_log_probs", "rollout_log_probs", "response_mask"))
        if not self.correction.enabled:
            return mismatch_metrics(old, rollout, mask)
        weights, mask, metrics = rollout_correction(old, rollout, mask, self.correction)
        if weights is not None:
            batch.batch["rollout_is_weights"] = weights
        batch.batch["response_mask"] = mask.to(batch.batch["response_mask"].dtype)
        return metrics

    def update_actor(self, batch: DataProto) -> dict[str, float]:
        view = for_workers(batch, "old_log_probs", "advantages", "ref_log_prob", "rollout_log_probs",
                           "rollout_is_weights")
        return reduce_worker_metrics(self.actor_rollout_wg.update_actor(view).meta_info["metrics"])

    def update_critic(self, batch: DataProto) -> dict[str, float]:
        metrics = self.critic_wg.update_critic(for_workers(batch, "values", "returns")).meta_info["metrics"]
        return reduce_worker_metrics(metrics)

    def greedy_baseline(self, batch: DataProto) -> torch.Tensor:
        """ReMax: the score of the greedy response to each prompt."""
        prompts = batch.select(batch_keys=["input_ids", "attention_mask", "position_ids"],
                               non_tensor_batch_keys=[k for k in batch.non_tensor_batch if k != "uid"])
        prompts.batch = prompts.batch.clone()
        prompts.batch["input_ids"] = batch.batch["prompts"]
        p = batch.batch["prompts"].shape[-1]
        prompts.batch["attention_mask"] = batch.batch["attention_mask"][:, :p]
        prompts.batch["position_ids"] = batch.batch["position_ids"][..., :p]
        prompts.meta_info = {"n": 1, "do_sample": False}  # greedy, whatever val_kwargs say (veRL's ReMax)
        greedy = self.actor_rollout_wg.generate_sequences(prompts)  # the step's prompts: already checked
        return self.reward_fn(greedy, return_dict=True)["reward_tensor"].sum(-1)

    def apply_kl_in_reward(self, batch: DataProto) -> dict[str, float]:
        scores, mask = batch.batch["token_level_scores"], batch.batch["response_mask"]
        if not setting(self.algo, "algorithm.use_kl_in_reward"):
            batch.batch["token_level_rewards"] = scores
            return {}
        kld = kl_penalty(batch.batch["old_log_probs"], batch.batch["ref_log_prob"],
                         setting(self.algo, "algorithm.kl_penalty"))
        kld = kld * mask
        beta = self.kl_ctrl.value
        batch.batch["token_level_rewards"] = scores - beta * kld
        current = kl_in_reward_metric(kld, mask).item()  # veRL: the mean over rows of each row's mean
        self.kl_ctrl.update(current, n_steps=len(batch))
        return {"actor/reward_kl_penalty": current, "actor/reward_kl_penalty_coeff": beta}

    def compute_advantage(self, batch: DataProto) -> None:
        name = setting(self.algo, "algorithm.adv_estimator")
        kwargs = {"token_level_rewards": batch.batch["token_level_rewards"],
                  "response_mask": batch.batch["response_mask"],
                  "index": batch.non_tensor_batch["uid"], "gamma": setting(self.algo, "algorithm.gamma"),
                  "lam": setting(self.algo, "algorithm.lam"), "config": ConfigView(self.algo),
                  "norm_adv_by_std_in_grpo": setting(self.algo, "algorithm.norm_adv_by_std_in_grpo")}
        if "values" in batch.batch.keys():
            kwargs["values"] = batch.batch["values"]
        if "reward_baselines" in batch.batch.keys():
            kwargs["reward_baselines"] = batch.batch["reward_baselines"]
        advantages, returns = compute_advantage(name, **kwargs)
        batch.batch["advantages"], batch.batch["returns"] = advantages, returns

    def keep_samples(self, batch: DataProto, reward: dict) -> None:
        """This step's generations on disk (trainer.rollout_data_dir; a few for the run report)."""
        self.samples.add("train", self.global_step, batch, self.tokenizer,
                         batch.batch["token_level_scores"].sum(-1).tolist(), reward.get("reward_extra_info", {}))

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Generation with val_kwargs over the validation set: val-core/<data_source>/<var>/mean@N and, for
        N > 1, best@n / worst@n / maj@n with bootstrap std (validation_metrics.py)."""
        sources, uids, infos, samples = [], [], defaultdict(list), []
        for index, batch_dict in enumerate(self.val_loader):
            batch = DataProto.from_single_dict(batch_dict)
            batch.non_tensor_batch["uid"] = as_object_array([f"val-{index}-{i}" for i in range(len(batch))])
            batch.meta_info = {"validate": True}
            out = self.generate(batch, "val")
            reward = self.val_reward_fn(out, return_dict=True)
            sources += list(out.non_tensor_batch["data_source"])
            uids += list(out.non_tensor_batch["uid"])
            for key, values in reward["reward_extra_info"].items():
                infos["reward" if key == "score" else key] += [v if isinstance(v, str) else float(v) for v in values]
            samples += self.samples.add("val", self.global_step, out, self.tokenizer,
                                        reward["reward_tensor"].sum(-1).tolist(), reward["reward_extra_info"])
        shown = samples[:setting(self.trainer_cfg, "trainer.log_val_generations")]
        for s in shown:
            log.info("[validation] %s | response %r | ground truth %r | score %.3f", s["row"], s["output"], s["gts"],
                     s["score"])
        if shown and self.tracker is not None:
            self.tracker.log_samples(self.global_step, shown)
        return validation_metrics(sources, uids, dict(infos))

    def worker_processes(self) -> list:
        """One group per set of worker processes (fused roles share the actor's processes)."""
        groups = [self.actor_rollout_wg]
        if self.critic_wg is not None and self.critic_wg.workers != self.actor_rollout_wg.workers:
            groups.append(self.critic_wg)
        return groups

    def reset_compute_counters(self) -> None:
        for group in self.worker_processes():
            group.take_compute_seconds()

    def overhead_metrics(self, timing: dict) -> dict[str, float]:
        """perf/controller_overhead_s: step time not spent computing in workers (the slowest rank),
        scoring rewards or computing advantages, i.e. the cost of orchestration itself."""
        worker_s = sum(max(group.take_compute_seconds()) for group in self.worker_processes())
        driver_s = timing.get("reward", 0.0) + timing.get("adv", 0.0)
        overhead = max(0.0, timing["step"] - worker_s - driver_s)
        return {"perf/worker_compute_s": worker_s, "perf/controller_overhead_s": overhead,
                "perf/controller_overhead_frac": overhead / max(timing["step"], 1e-9)}

    # ------------------------------------------------------------------ helpers
    def total_steps(self) -> int:
        return total_training_steps(self.trainer_cfg, len(self.train_loader))

    def should(self, key: str) -> bool:
        freq = self.trainer_cfg.get(key, -1) or -1
        return freq > 0 and self.global_step % freq == 0

    @staticmethod
    @contextmanager
    def timer(name: str, timing: dict):
        """Seconds spent in the block, added to timing[name] (dynamic sampling generates several times)."""
        start = time.perf_counter()
        yield
        timing[name] = timing.get(name, 0.0) + time.perf_counter() - start
