"""Command-line overrides as veRL writes them: `a.b=v` for any key reaches verlvl's own check (never Hydra's
"Could not override"), and the CPU demo's preset is chosen when the model is a built-in one."""

from __future__ import annotations

from typing import Iterable

DEMO_PRESET = "tiny_demo"  # conf/preset/tiny_demo.yaml: the CPU demo's sizes and learning rate
NO_PRESET = "none"


def _is_value_override(arg: str) -> bool:
    """`a.b=v` (a dotted key, no Hydra prefix): a config value, not a group choice or a flag."""
    if "=" not in arg or arg.startswith(("+", "~", "-")):
        return False
    key = arg.split("=", 1)[0]
    return "." in key and not key.startswith("hydra.")


def verl_overrides(args: Iterable[str]) -> list[str]:
    """`a.b=v` becomes `++a.b=v` (set it whether or not the YAML has the key): a key the YAML lacks reaches
    check_config, which knows veRL's keys and refuses unknown ones by name."""
    return [f"++{a}" if _is_value_override(a) else a for a in args]


def with_preset(args: list[str], config_dir: str, config_name: str = "ppo_trainer") -> list[str]:
    """`args` plus `preset=tiny_demo` when the composed model is built-in (builtin://...) and no preset is
    chosen on the command line, else `preset=none`: a run that names a model never inherits the demo's values."""
    if any(a.split("=", 1)[0].lstrip("+") == "preset" for a in args if "=" in a):
        return args
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from verlvl.trainer.builtin import is_builtin

    overrides = [a for a in args if "=" in a and not a.startswith("-")]  # not Hydra's flags (--cfg job)
    try:
        if GlobalHydra.instance().is_initialized():  # inside an application that set Hydra up (tests)
            cfg = compose(config_name=config_name, overrides=overrides)
        else:
            with initialize_config_dir(config_dir=config_dir, version_base=None):
                cfg = compose(config_name=config_name, overrides=overrides)
        path = cfg.actor_rollout_ref.model.get("path")
    except Exception:  # Hydra reports a bad override itself when the real composition runs
        return args
    # first: Hydra's parser takes the overrides before its flags (--cfg job)
    return [f"preset={DEMO_PRESET if is_builtin(path) else NO_PRESET}", *args]
