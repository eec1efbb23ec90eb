"""Registry: named extension points users add to (estimators, losses, reward managers, scorers)."""

from __future__ import annotations

from typing import Callable


class Registry(dict):
    """A dict of name -> implementation with a decorator to add to it and a lookup whose error names
    the config key and the known names."""

    def __init__(self, what: str, config_key: str):
        super().__init__()
        self.what, self.config_key = what, config_key

    def register(self, *names: str) -> Callable:
        def decorator(obj):
            for name in names:
                self[name] = obj
            return obj

        return decorator

    def register_new(self, name: str) -> Callable:
        """veRL's registration rule: a decorator adding `obj` under `name`; another object under a taken
        name is refused (the same one again is fine: a module imported twice)."""

        def decorator(obj):
            if self.get(name, obj) is not obj:
                old = self[name]
                raise ValueError(f"{self.what} {name!r} is already registered ({old.__module__}.{old.__qualname__});"
                                 f" pick another name for {obj.__module__}.{obj.__qualname__}")
            self[name] = obj
            return obj

        return decorator

    def lookup(self, name: str):
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r} ({self.config_key}); known: {sorted(self)}")
        return self[name]
