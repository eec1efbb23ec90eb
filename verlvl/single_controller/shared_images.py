"""A batch's images cross Ray once: the driver puts each row's images into Ray's object store once and
sends references; a worker fetches each once per process and sends the same references back."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from verlvl.protocol import DataProto

IMAGES_KEY = "multi_modal_data"


class SharedImages:
    """A reference to one row's images (a list of PIL images) in Ray's object store."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref

    def __reduce__(self):
        return SharedImages, (self.ref,)


def _images(mm):
    return mm.get("image") if isinstance(mm, dict) else None


def carries_shared_images(data) -> bool:
    if not isinstance(data, DataProto) or IMAGES_KEY not in data.non_tensor_batch:
        return False
    return any(isinstance(_images(mm), SharedImages) for mm in data.non_tensor_batch[IMAGES_KEY])


class ImageExchange:
    """One process's side: rows' image dicts <-> references, remembered (LRU, `capacity` distinct image
    lists) so that the same images are put or fetched once however many calls carry them."""

    def __init__(self, capacity: int = 8192):
        self.capacity = capacity
        self._by_ref: OrderedDict[str, tuple[dict, dict]] = OrderedDict()  # ref -> (images dict, shared dict)
        self._ref_of: dict[int, str] = {}  # id(images dict) -> ref, for dicts held in _by_ref

    def share(self, data: DataProto) -> DataProto:
        """A copy of `data` whose rows reference their images instead of carrying them."""
        import ray

        column = data.non_tensor_batch.get(IMAGES_KEY)
        if column is None:
            return data
        out = np.empty(len(column), dtype=object)
        for i, mm in enumerate(column):
            images = _images(mm)
            if not images or isinstance(images, SharedImages):
                out[i] = mm
                continue
            key = self._ref_of.get(id(mm))
            if key is None:
                shared = {**mm, "image": SharedImages(ray.put(list(images)))}
                key = self._remember(mm, shared)
            self._by_ref.move_to_end(key)
            out[i] = self._by_ref[key][1]
        return DataProto(batch=data.batch, non_tensor_batch={**data.non_tensor_batch, IMAGES_KEY: out},
                         meta_info=data.meta_info)

    def resolve(self, data: DataProto) -> DataProto:
        """In place: every reference replaced by its images (fetched once, then from memory)."""
        import ray

        if not carries_shared_images(data):
            return data
        column = data.non_tensor_batch[IMAGES_KEY]
        out = np.empty(len(column), dtype=object)
        for i, mm in enumerate(column):
            images = _images(mm)
            if not isinstance(images, SharedImages):
                out[i] = mm
                continue
            key = images.ref.hex()
            if key not in self._by_ref:
                self._remember({**mm, "image": ray.get(images.ref)}, mm)
            self._by_ref.move_to_end(key)
            out[i] = self._by_ref[key][0]
        data.non_tensor_batch[IMAGES_KEY] = out
        return data

    def _remember(self, images_dict: dict, shared_dict: dict) -> str:
        key = _images(shared_dict).ref.hex()
        self._by_ref[key] = (images_dict, shared_dict)
        self._ref_of[id(images_dict)] = key
        while len(self._by_ref) > self.capacity:
            _, (old, _) = self._by_ref.popitem(last=False)
            self._ref_of.pop(id(old), None)
        return key


WORKER_EXCHANGE = ImageExchange()  # the worker process's side
