"""The single controller: workers, dispatch modes, resource pools and Ray worker groups."""

from verlvl.single_controller.colocate import create_colocated_worker_cls, create_colocated_worker_groups
from verlvl.single_controller.decorator import Dispatch, DispatchMode, make_mesh_dispatch, register
from verlvl.single_controller.future import DataProtoFuture
from verlvl.single_controller.resource_pool import RayResourcePool
from verlvl.single_controller.worker import Worker
from verlvl.single_controller.worker_group import RayClassWithInitArgs, RayWorkerGroup, WorkerError

__all__ = [
    "DataProtoFuture", "Dispatch", "DispatchMode", "RayClassWithInitArgs", "RayResourcePool", "RayWorkerGroup",
    "Worker", "WorkerError", "create_colocated_worker_cls", "create_colocated_worker_groups", "make_mesh_dispatch",
    "register",
]
