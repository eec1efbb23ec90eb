"""Colocation: several role classes fused into one Ray actor per slot, each keeping its method names."""

from __future__ import annotations

from verlvl.single_controller.decorator import REGISTER_ATTR, registered_methods
from verlvl.single_controller.resource_pool import RayResourcePool
from verlvl.single_controller.worker import Worker
from verlvl.single_controller.worker_group import RayClassWithInitArgs, RayWorkerGroup

SEP = "__"  # fused method name: f"{role}{SEP}{method}"


def _forward(role: str, name: str, info: dict | None):
    def method(self, *args, **kwargs):
        return getattr(self._roles[role], name)(*args, **kwargs)

    method.__name__ = f"{role}{SEP}{name}"
    if info is not None:
        setattr(method, REGISTER_ATTR, info)
    return method


def create_colocated_worker_cls(class_dict: dict[str, RayClassWithInitArgs]) -> RayClassWithInitArgs:
    """One Worker class holding an instance of every role (sharing its process, device and
    torch.distributed group), with each role's methods exposed as `role__method`."""
    for role in class_dict:
        if SEP in role or not role.isidentifier():
            raise ValueError(f"role name {role!r} must be an identifier without {SEP!r}")
        if not issubclass(class_dict[role].cls, Worker):
            raise TypeError(f"role {role!r}: {class_dict[role].cls.__name__} must subclass verlvl Worker")

    def __init__(self, role_specs):
        Worker.__init__(self)
        self._roles = {role: cls(*args, **kwargs) for role, (cls, args, kwargs) in role_specs.items()}

    attrs = {"__init__": __init__}
    for role, spec in class_dict.items():
        for name, info in registered_methods(spec.cls).items():
            attrs[f"{role}{SEP}{name}"] = _forward(role, name, info)
        attrs[f"{role}{SEP}_query_dispatch_collect_info"] = _forward(role, "_query_dispatch_collect_info", None)
    fused = type("Fused_" + "_".join(class_dict), (Worker,), attrs)
    specs = {role: (spec.cls, spec.args, spec.kwargs) for role, spec in class_dict.items()}
    return RayClassWithInitArgs(fused, specs)


def create_colocated_worker_groups(resource_pool: RayResourcePool, class_dict: dict[str, RayClassWithInitArgs],
                                   **group_kwargs) -> dict[str, RayWorkerGroup]:
    """One actor per slot holding all roles; returns a worker group per role, e.g.
    `groups["critic"].compute_values(batch)`. The groups share the actors."""
    fused = RayWorkerGroup(resource_pool, create_colocated_worker_cls(class_dict), role="+".join(class_dict),
                           **group_kwargs)
    return {role: RayWorkerGroup._view(fused, role, f"{role}{SEP}", spec.cls) for role, spec in class_dict.items()}
