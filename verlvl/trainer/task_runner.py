"""TaskRunner: builds data, reward, worker groups, trackers and checkpoints from a checked config, then fits."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from verlvl.config.defaults import setting
from verlvl.data.collate import collate_fn
from verlvl.data.config import DataConfig
from verlvl.data.images import DataError
from verlvl.data.loader import ResumableLoader
from verlvl.data.rl_dataset import RLDataset
from verlvl.models.processor import load_processor, load_tokenizer, use_chat_template
from verlvl.reward.function import spec_from_config
from verlvl.reward.managers import build_reward_manager
from verlvl.single_controller import (RayClassWithInitArgs, RayResourcePool, RayWorkerGroup,
                                      create_colocated_worker_groups)
from verlvl.trainer import builtin
from verlvl.trainer.checkpoint import Checkpointer
from verlvl.trainer.config import Derived
from verlvl.trainer.ppo_trainer import PPOTrainer, total_training_steps
from verlvl.trainer.dumps import RunSamples
from verlvl.utils.external_lib import import_external_lib, resolve
from verlvl.utils.tracking import Tracking
from verlvl.workers.fsdp_workers import ActorRolloutRefWorker, CriticWorker

log = logging.getLogger(__name__)


def build_reward(cfg: dict, tokenizer):
    """The reward manager; the reward function is loaded and checked here, before any model loads."""
    rm = cfg.get("reward_model") or {}
    name = setting(rm, "reward_model.reward_manager")
    kwargs = dict(num_workers=setting(rm, "reward_model.num_workers"),
                  timeout_s=setting(rm, "reward_model.timeout_s"),
                  reward_fn_key=(cfg.get("data") or {}).get("reward_fn_key") or "data_source",
                  error_score=setting(rm, "reward_model.error_score"))
    if name == "dapo":
        kwargs.update(max_resp_len=cfg["data"]["max_response_length"], overlong_buffer_cfg=rm.get("overlong_buffer"))
    import_external_lib(cfg["actor_rollout_ref"]["model"].get("external_lib"))  # a reward manager it registers
    return build_reward_manager(name, tokenizer, spec_from_config(cfg.get("custom_reward_function")), **kwargs)


def build_loaders(cfg: dict, derived: Derived, tokenizer, processor):
    data_cfg = DataConfig.from_mapping({**cfg["data"], "train_files": list(derived.train_files),
                                        "val_files": list(derived.val_files)})
    train = RLDataset(list(derived.train_files), tokenizer, processor, data_cfg, data_cfg.train_max_samples)
    filter_groups = (cfg.get("algorithm") or {}).get("filter_groups")
    dynamic = bool(setting(filter_groups, "algorithm.filter_groups.enable"))
    batch_size = (data_cfg.gen_batch_size or data_cfg.train_batch_size) if dynamic else data_cfg.train_batch_size
    train_loader = ResumableLoader(train, batch_size, shuffle=data_cfg.shuffle, seed=data_cfg.seed,
                                   num_workers=data_cfg.dataloader_num_workers, collate_fn=collate_fn)
    reward = spec_from_config(cfg.get("custom_reward_function"))
    _check_ground_truth(train, reward)
    val_loader = None
    if derived.val_files:
        val = RLDataset(list(derived.val_files), tokenizer, processor, data_cfg, data_cfg.val_max_samples)
        val_loader = ResumableLoader(val, data_cfg.val_batch_size or len(val), shuffle=False, drop_last=False,
                                     collate_fn=collate_fn)
    return train_loader, val_loader


def _check_ground_truth(dataset: RLDataset, reward) -> None:
    """A rule reward scores against reward_model.ground_truth: rows without one are an error (naming them),
    unless the custom reward function's ground_truth argument has a default."""
    if reward is not None and not reward.needs_ground_truth():
        return
    missing = dataset.rows_without_ground_truth()
    if missing:
        scorer = reward.describe() if reward is not None else "the built-in scorer"
        raise DataError(f"{len(missing)} training rows have no reward_model.ground_truth (e.g. "
                        f"{'; '.join(missing[:3])}), which {scorer} scores against: write the column (the "
                        "data_preprocess/ scripts do) or give the reward function's ground_truth a default")


def worker_configs(cfg: dict, derived: Derived, total_steps: int) -> tuple[dict, dict]:
    """Copies of the user's sections with the derived values filled in (the user's config is untouched)."""
    arr = copy.deepcopy(cfg["actor_rollout_ref"])
    arr.pop("hybrid_engine", None)
    arr["model"]["path"] = derived.model_path
    if arr["model"].get("external_lib"):  # workers run in other folders: a file path is made absolute
        arr["model"]["external_lib"] = resolve(arr["model"]["external_lib"])
    arr["actor"].setdefault("optim", {})["total_training_steps"] = total_steps
    multi_turn = arr["rollout"].get("multi_turn") or {}
    for key in ("tool_config_path", "interaction_config_path"):  # workers run in other folders; builtin:// is written
        if multi_turn.get(key):
            multi_turn[key] = str(Path(builtin.resolve(multi_turn[key])).expanduser().resolve())
    arr["seed"] = setting(cfg["trainer"], "trainer.seed")
    critic = copy.deepcopy(cfg.get("critic") or {})
    critic.pop("enable", None)
    critic_path = critic.setdefault("model", {}).get("path") or cfg["actor_rollout_ref"]["model"]["path"]
    critic["model"]["path"] = builtin.resolve(critic_path)
    critic.setdefault("optim", {})["total_training_steps"] = total_steps
    critic["rollout_n"] = arr["rollout"]["n"]
    return arr, critic


@dataclass
class RunResult:
    metrics: dict  # the last step's metrics
    workers: list[dict]  # node, pid and rank of each worker
    run_dir: Path


def save_config(cfg: dict, run_dir: Path) -> None:
    """The resolved config beside the run's metrics (the report shows it; a rerun can start from it)."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def run(cfg: dict, derived: Derived) -> RunResult:
    trainer_cfg = cfg["trainer"]
    tokenizer, processor = load_tokenizer(derived.model_path), load_processor(derived.model_path)
    use_chat_template(tokenizer, processor, cfg["actor_rollout_ref"]["model"].get("custom_chat_template"))
    reward_fn = build_reward(cfg, tokenizer)  # one scoring pool serves training and validation
    train_loader, val_loader = build_loaders(cfg, derived, tokenizer, processor)
    arr_cfg, critic_cfg = worker_configs(cfg, derived, total_training_steps(trainer_cfg, len(train_loader)))

    pool = RayResourcePool([trainer_cfg["n_gpus_per_node"]] * trainer_cfg["nnodes"], use_gpu=derived.use_gpu)
    actor_role = "actor_rollout_ref" if derived.use_reference else "actor_rollout"
    roles = {"actor_rollout": RayClassWithInitArgs(ActorRolloutRefWorker, config=arr_cfg, role=actor_role)}
    if derived.use_critic:
        roles["critic"] = RayClassWithInitArgs(CriticWorker, config=critic_cfg)
    groups = create_colocated_worker_groups(pool, roles) if len(roles) > 1 else {
        "actor_rollout": RayWorkerGroup(pool, roles["actor_rollout"], role="actor_rollout")}
    for group in groups.values():
        group.init_model()
    workers = groups["actor_rollout"].worker_info
    for w in workers:
        log.info("worker rank %d on node %s (pid %d)", w["rank"], w["node_ip"], w["pid"])
    run_dir = Path(trainer_cfg["default_local_dir"])
    tracker = Tracking(setting(trainer_cfg, "trainer.logger"), setting(trainer_cfg, "trainer.project_name"),
                       setting(trainer_cfg, "trainer.experiment_name"), str(run_dir), config=cfg,
                       console=tqdm.write)
    print(f"[verlvl] metrics and checkpoints go to {run_dir.resolve()}; "
          f"plot them with: python -m verlvl.plot {run_dir}")
    save_config(cfg, run_dir)
    samples = RunSamples(run_dir, trainer_cfg.get("rollout_data_dir"), trainer_cfg.get("validation_data_dir"),
                         {"val": max(4, int(trainer_cfg.get("log_val_generations") or 0))})
    trainer = PPOTrainer(cfg, derived, tokenizer, train_loader, val_loader, reward_fn, reward_fn,
                         groups["actor_rollout"], groups.get("critic"), tracker, Checkpointer(cfg, run_dir), samples)
    try:
        result = RunResult(trainer.fit(), workers, run_dir)
        if "jsonl" in (trainer_cfg.get("logger") or []):
            from verlvl.plot import plot

            plots = plot(run_dir)
            if plots:
                print(f"[verlvl] plots: {plots[-1]}")
        try:
            from verlvl.report import write_report

            print(f"[verlvl] report: {write_report(run_dir)}")
        except Exception as e:  # the report is a view of the run: it never fails the run
            log.warning("writing the run report failed (%s: %s); retry with: python -m verlvl.report %s",
                        type(e).__name__, e, run_dir)
        return result
    finally:
        tracker.close()
        reward_fn.close()
        groups["actor_rollout"].shutdown()  # the fused roles share these actors
        pool.release()
