"""Starting Ray: join the cluster named by an address or RAY_ADDRESS, else start a local one sized to fit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

log = logging.getLogger(__name__)


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def init_ray(address: str | None = None, num_cpus: int | None = None, required_cpus: int = 0,
             runtime_env: dict | None = None, **init_kwargs) -> dict:
    """Initialise Ray once per process and return a short description of the cluster.

    - `address` (or RAY_ADDRESS): join that cluster. Ray 2.60 heads may require token authentication;
      when a token is available (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) it is used.
    - otherwise start a local cluster whose logical CPU count is at least `required_cpus`, so that the
      driver task and every worker slot can be placed even on a 2-core machine (Ray CPUs are a
      scheduling unit, not a thread limit).
    """
    if ray.is_initialized():
        return cluster_summary()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(init_kwargs, runtime_env=runtime_env, log_to_driver=init_kwargs.get("log_to_driver", True))
    if address:
        _join(address, kwargs)
    else:
        cpus = max(num_cpus or os.cpu_count() or 1, required_cpus)
        kwargs.setdefault("include_dashboard", False)
        # "local": always a new cluster. Without it Ray silently joins any cluster already running on
        # this machine (another user's run, a test session), which ignores num_cpus and shares resources.
        ray.init(address="local", num_cpus=cpus, **kwargs)
    summary = cluster_summary()
    log.info("Ray: %s", summary)
    return summary


def _join(address: str, kwargs: dict) -> None:
    # Ray enables token mode by itself only for address="auto". For an explicit address, ask the head
    # (one cheap RPC) whether it wants a token, so a user who copied the token needs nothing else and
    # one who did not gets told at once instead of after a minute of connection retries.
    if address != "auto" and "://" not in address and "RAY_AUTH_MODE" not in os.environ:
        if _head_requires_token(address):
            if not _token_available():
                raise _join_error(address, PermissionError("the head requires a token and none is available"))
            _enable_token_mode()
    try:
        ray.init(address=address, **kwargs)
    except Exception as error:  # ConnectionError, AuthenticationError, ...
        raise _join_error(address, error) from error


def _head_requires_token(address: str, timeout_s: float = 5.0) -> bool:
    """True when the GCS at host:port answers UNAUTHENTICATED to a request without a token."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


def _enable_token_mode() -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config at import: refresh it, as Ray itself does for address="auto"
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # pragma: no cover - older Ray without the cache
        pass


def _join_error(address: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not join the Ray cluster at {address!r} (from ray_init.address or RAY_ADDRESS): "
        f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}\n"
        "Check that `ray start --head` runs there and the address/port is right. If the head uses token "
        "authentication (Ray >= 2.60 default), copy its token to ~/.ray/auth_token on this machine or set "
        "RAY_AUTH_TOKEN; RAY_ADDRESS=auto joins a cluster started on this same machine.")


def cluster_summary() -> dict:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    return {"nodes": len(nodes), "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0)}
