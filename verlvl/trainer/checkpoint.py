"""Checkpoints on the driver side: global_step_N folders, the atomic `latest` marker, pruning, resume."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import torch

from verlvl.config.defaults import setting

log = logging.getLogger(__name__)
MARKER = "latest_checkpointed_iteration.txt"  # veRL's name


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the message names it and the checkpoint that stays the latest."""


class Checkpointer:
    """trainer.default_local_dir/global_step_N/{actor,critic,trainer_state.pt}; the marker is written
    last, by an atomic rename, so a crash mid-save leaves the previous checkpoint as the latest."""

    def __init__(self, cfg: dict, run_dir: Path):
        t = cfg["trainer"]
        self.run_dir = Path(run_dir)
        self.keep = t.get("max_actor_ckpt_to_keep")
        self.keep_critic = t.get("max_critic_ckpt_to_keep")
        self.resume_mode = setting(t, "trainer.resume_mode")
        self.resume_from = t.get("resume_from_path")
        if self.resume_mode not in ("auto", "disable", "resume_path"):
            raise ValueError(f"trainer.resume_mode={self.resume_mode!r}: use auto, disable or resume_path")
        if self.resume_mode == "resume_path" and not self.resume_from:
            raise ValueError("trainer.resume_mode=resume_path needs trainer.resume_from_path=.../global_step_N")

    def save(self, trainer) -> Path:
        step_dir = self.run_dir / f"global_step_{trainer.global_step}"
        try:
            trainer.actor_rollout_wg.save_checkpoint(str(step_dir / "actor"),
                                                     str(step_dir / "actor" / "huggingface"))
            if trainer.critic_wg is not None:
                trainer.critic_wg.save_checkpoint(str(step_dir / "critic"))
            torch.save({"global_step": trainer.global_step, "dataloader": trainer.train_loader.state_dict(),
                        "kl_coef": trainer.kl_ctrl.value}, step_dir / "trainer_state.pt")
        except Exception as e:
            shutil.rmtree(step_dir, ignore_errors=True)  # a half-written checkpoint only takes space
            previous = self.latest()
            raise CheckpointSaveError(
                f"saving {step_dir} failed ({type(e).__name__}: {e}); the run stops here. "
                + (f"The latest complete checkpoint is {previous}, which trainer.resume_mode=auto resumes from"
                   if previous else "No earlier checkpoint exists") + " once the cause (disk space?) is fixed"
            ) from e
        tmp = self.run_dir / f".{MARKER}.tmp"
        tmp.write_text(str(trainer.global_step))
        os.replace(tmp, self.run_dir / MARKER)
        self._prune()
        log.info("saved checkpoint %s", step_dir)
        return step_dir

    def latest(self) -> Path | None:
        marker = self.run_dir / MARKER
        if not marker.exists():
            return None
        step_dir = self.run_dir / f"global_step_{int(marker.read_text().strip())}"
        return step_dir if step_dir.exists() else None

    def resume(self, trainer) -> int:
        """Load the checkpoint resume_mode points at; returns the step to continue from (0: fresh)."""
        if self.resume_mode == "disable":
            return 0
        step_dir = Path(self.resume_from) if self.resume_mode == "resume_path" else self.latest()
        if step_dir is None:
            return 0
        if not (step_dir / "trainer_state.pt").exists():
            raise FileNotFoundError(f"{step_dir} is not a complete checkpoint (no trainer_state.pt)")
        state = torch.load(step_dir / "trainer_state.pt", weights_only=False)
        trainer.actor_rollout_wg.load_checkpoint(str(step_dir / "actor"))
        if trainer.critic_wg is not None:
            trainer.critic_wg.load_checkpoint(str(step_dir / "critic"))
        trainer.train_loader.load_state_dict(state["dataloader"])
        trainer.kl_ctrl.value = state["kl_coef"]
        print(f"[verlvl] resumed from {step_dir} at step {state['global_step']}")
        return int(state["global_step"])

    def _prune(self) -> None:
        """veRL's max_actor_ckpt_to_keep / max_critic_ckpt_to_keep: the newest N actor (critic) checkpoints
        stay; a step folder left with neither is removed whole."""
        steps = sorted(int(m.group(1)) for p in self.run_dir.glob("global_step_*")
                       if (m := re.fullmatch(r"global_step_(\d+)", p.name)))
        for role, keep in (("actor", self.keep), ("critic", self.keep_critic)):
            if keep and keep > 0:
                for step in steps[:-keep]:
                    shutil.rmtree(self.run_dir / f"global_step_{step}" / role, ignore_errors=True)
        for step in steps:
            folder = self.run_dir / f"global_step_{step}"
            if not (folder / "actor").exists() and not (folder / "critic").exists():
                shutil.rmtree(folder, ignore_errors=True)
