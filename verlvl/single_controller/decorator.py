"""@register and the dispatch modes: how one driver-side call becomes per-worker calls and back."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from verlvl.protocol import DataProto, pad_dataproto_to_divisor, unpad_dataproto
from verlvl.single_controller.shared_images import WORKER_EXCHANGE, carries_shared_images

REGISTER_ATTR = "__verlvl_register__"
# Seconds this process spent inside registered methods since the driver last asked (see
# Worker._take_compute_seconds): the driver subtracts it from step time to see its own overhead.
COMPUTE_SECONDS = [0.0]


class Dispatch(str, Enum):
    """Built-in dispatch modes (veRL's names)."""

    ONE_TO_ALL = "one_to_all"  # every worker gets the same arguments; the driver gets a list
    ALL_TO_ALL = "all_to_all"  # each argument is a list with one entry per worker
    RANK_ZERO = "rank_zero"  # only rank 0 runs; the driver gets its result
    DP_COMPUTE_PROTO = "dp_compute_proto"  # DataProto args are chunked by rank; results concatenated


@dataclass
class CallPlan:
    """Which workers run, with which arguments, and what the collector needs to know."""

    worker_indices: list[int]
    args: list[tuple]
    kwargs: list[dict]
    pad_size: int = 0
    # For data-parallel dispatch: the worker index whose output holds each DP chunk, in DP order.
    collect_from: list[int] | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchMode:
    """A dispatch function and its collector. `mesh_name` is set for named-mesh DP dispatch."""

    name: str
    dispatch: Callable[[Any, tuple, dict], CallPlan]
    collect: Callable[[Any, list, CallPlan], Any]
    mesh_name: str | None = None


def _materialise(value):
    from verlvl.single_controller.future import DataProtoFuture

    return value.get() if isinstance(value, DataProtoFuture) else value


def _chunk_args(args: tuple, kwargs: dict, n_chunks: int) -> tuple[list[tuple], list[dict], int]:
    """Pad every DataProto argument to a multiple of n_chunks and chunk it; other arguments broadcast.

    A DataProtoFuture from an earlier data-parallel call with the same number of chunks is passed on
    chunk by chunk (as object refs, so the driver never fetches the data)."""
    from verlvl.single_controller.future import DataProtoFuture

    pad_size = None
    per_chunk_args: list[list] = [[] for _ in range(n_chunks)]
    per_chunk_kwargs: list[dict] = [{} for _ in range(n_chunks)]

    def split_one(value):
        nonlocal pad_size
        if isinstance(value, DataProtoFuture) and value.can_pass_on(n_chunks):
            this_pad = value.pad_size
            parts = value.chunk_refs()
        else:
            value = _materialise(value)
            if not isinstance(value, DataProto):
                return [value] * n_chunks
            value, this_pad = pad_dataproto_to_divisor(value, n_chunks)
            parts = value.chunk(n_chunks)
        if pad_size is not None and this_pad != pad_size:
            raise ValueError("DataProto arguments of one call must have the same number of rows")
        pad_size = this_pad
        return parts

    for value in args:
        for i, part in enumerate(split_one(value)):
            per_chunk_args[i].append(part)
    for key, value in kwargs.items():
        for i, part in enumerate(split_one(value)):
            per_chunk_kwargs[i][key] = part
    return [tuple(a) for a in per_chunk_args], per_chunk_kwargs, pad_size or 0


def _concat_outputs(outputs: list, pad_size: int):
    if outputs and all(isinstance(o, DataProto) for o in outputs):
        return unpad_dataproto(DataProto.concat(outputs), pad_size)
    return outputs


def _dispatch_one_to_all(wg, args, kwargs) -> CallPlan:
    args, kwargs = tuple(_materialise(a) for a in args), {k: _materialise(v) for k, v in kwargs.items()}
    n = wg.world_size
    return CallPlan(list(range(n)), [args] * n, [kwargs] * n)


def _dispatch_all_to_all(wg, args, kwargs) -> CallPlan:
    n = wg.world_size
    for i, value in enumerate(list(args) + list(kwargs.values())):
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ValueError(f"ALL_TO_ALL needs every argument to be a list of {n} (one per worker); "
                             f"argument {i} is {type(value).__name__}")
    return CallPlan(list(range(n)), [tuple(a[i] for a in args) for i in range(n)],
                    [{k: v[i] for k, v in kwargs.items()} for i in range(n)])


def _dispatch_rank_zero(wg, args, kwargs) -> CallPlan:
    return CallPlan([0], [tuple(_materialise(a) for a in args)], [{k: _materialise(v) for k, v in kwargs.items()}])


def _dispatch_dp_proto(wg, args, kwargs) -> CallPlan:
    n = wg.world_size
    chunk_args, chunk_kwargs, pad = _chunk_args(args, kwargs, n)
    return CallPlan(list(range(n)), chunk_args, chunk_kwargs, pad_size=pad, collect_from=list(range(n)))


def _collect_list(wg, outputs, plan):
    return outputs


def _collect_rank_zero(wg, outputs, plan):
    return outputs[0]


def _collect_dp(wg, outputs, plan):
    by_worker = dict(zip(plan.worker_indices, outputs))
    return _concat_outputs([by_worker[i] for i in plan.collect_from], plan.pad_size)


def make_mesh_dispatch(mesh_name: str) -> DispatchMode:
    """Data-parallel dispatch over a named mesh: each worker has told the group its DP rank and
    whether its output is collected (via Worker._register_dispatch_collect_info). Workers of the
    same DP rank (tensor/sequence-parallel peers) get the same chunk; one copy of each comes back."""

    def dispatch(wg, args, kwargs) -> CallPlan:
        dp_ranks, is_collect = wg._dispatch_info(mesh_name)
        dp_size = max(dp_ranks) + 1
        chunk_args, chunk_kwargs, pad = _chunk_args(args, kwargs, dp_size)
        collect_from = [None] * dp_size
        for worker, (dp, collect) in enumerate(zip(dp_ranks, is_collect)):
            if collect:
                if collect_from[dp] is not None:
                    raise ValueError(f"mesh {mesh_name!r}: DP rank {dp} is collected from two workers")
                collect_from[dp] = worker
        missing = [dp for dp, w in enumerate(collect_from) if w is None]
        if missing:
            raise ValueError(f"mesh {mesh_name!r}: no worker is marked to collect DP rank(s) {missing}")
        n = wg.world_size
        return CallPlan(list(range(n)), [chunk_args[dp_ranks[w]] for w in range(n)],
                        [chunk_kwargs[dp_ranks[w]] for w in range(n)], pad_size=pad, collect_from=collect_from)

    return DispatchMode(f"mesh:{mesh_name}", dispatch, _collect_dp, mesh_name=mesh_name)


DISPATCH_MODES: dict[Dispatch, DispatchMode] = {
    Dispatch.ONE_TO_ALL: DispatchMode("one_to_all", _dispatch_one_to_all, _collect_list),
    Dispatch.ALL_TO_ALL: DispatchMode("all_to_all", _dispatch_all_to_all, _collect_list),
    Dispatch.RANK_ZERO: DispatchMode("rank_zero", _dispatch_rank_zero, _collect_rank_zero),
    Dispatch.DP_COMPUTE_PROTO: DispatchMode("dp_compute_proto", _dispatch_dp_proto, _collect_dp),
}


def resolve_dispatch_mode(mode: Dispatch | DispatchMode | str) -> DispatchMode:
    if isinstance(mode, DispatchMode):
        return mode
    try:
        return DISPATCH_MODES[Dispatch(mode)]
    except ValueError:
        raise ValueError(f"unknown dispatch mode {mode!r}; use one of {[m.value for m in Dispatch]} "
                         "or make_mesh_dispatch(name)") from None


def register(dispatch_mode: Dispatch | DispatchMode = Dispatch.ALL_TO_ALL, blocking: bool = True,
             mesh_name: str | None = None):
    """Expose a worker method to the driver. `mesh_name` is shorthand for make_mesh_dispatch(mesh_name).
    A non-blocking method returns a DataProtoFuture on the driver, which can be passed to the next call."""
    mode = make_mesh_dispatch(mesh_name) if mesh_name is not None else resolve_dispatch_mode(dispatch_mode)

    def decorator(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                shared = any(carries_shared_images(v) for v in list(args) + list(kwargs.values()))
                if not shared:  # a local call, or a batch without images
                    return func(*args, **kwargs)
                resolve = WORKER_EXCHANGE.resolve
                args = tuple(resolve(a) if isinstance(a, DataProto) else a for a in args)
                kwargs = {k: resolve(v) if isinstance(v, DataProto) else v for k, v in kwargs.items()}
                out = func(*args, **kwargs)
                # the same references go back: the driver still has the images
                return WORKER_EXCHANGE.share(out) if isinstance(out, DataProto) else out
            finally:
                COMPUTE_SECONDS[0] += time.perf_counter() - start

        setattr(inner, REGISTER_ATTR, {"dispatch_mode": mode, "blocking": blocking})
        return inner

    return decorator


def registered_methods(cls) -> dict[str, dict]:
    """name -> register info for every @register-ed method of a class (inherited ones included)."""
    found = {}
    for name in dir(cls):
        attr = getattr(cls, name, None)
        info = getattr(attr, REGISTER_ATTR, None)
        if callable(attr) and info is not None:
            found[name] = info
    return found
