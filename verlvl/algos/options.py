"""Reading a setting from a config that may be a dataclass, an object, a mapping or absent."""

from __future__ import annotations


def option(config, key: str, default):
    """config.key or config[key]; `default` when the config or the key is absent, or the value is None."""
    if config is None:
        return default
    value = config.get(key, None) if isinstance(config, dict) else getattr(config, key, None)
    return default if value is None else value
