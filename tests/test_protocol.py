"""DataProto: every operation, its error cases, pickling and a trip through Ray."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from verlvl.protocol import DataProto, DataProtoItem, as_object_array, pad_dataproto_to_divisor, unpad_dataproto


def make(n=6, meta=None):
    return DataProto.from_dict(
        tensors={"x": torch.arange(n * 2, dtype=torch.float32).view(n, 2), "ids": torch.arange(n)},
        non_tensors={"uid": [f"u{i}" for i in range(n)], "gt": [{"ans": i} for i in range(n)]},
        meta_info=meta if meta is not None else {"temperature": 1.0},
    )


def png_bytes(color):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- construction
def test_from_dict_and_len():
    d = make()
    assert len(d) == 6
    assert d.non_tensor_batch["uid"].dtype == object
    assert d.meta_info == {"temperature": 1.0}


def test_from_dict_keeps_nested_lists_one_dimensional():
    d = DataProto.from_dict({"x": torch.zeros(2)}, {"images": [[b"a", b"b"], [b"c", b"d"]]})
    assert d.non_tensor_batch["images"].shape == (2,)
    assert d.non_tensor_batch["images"][1] == [b"c", b"d"]


def test_from_dict_rejects_mismatched_rows_naming_keys():
    with pytest.raises(ValueError, match=r"tensors\['b'\].*tensors\['a'\]"):
        DataProto.from_dict({"a": torch.zeros(3), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"non_tensor_batch\['s'\] has 2 entries but the batch has 3 rows"):
        DataProto.from_dict({"a": torch.zeros(3)}, {"s": ["x", "y"]})
    with pytest.raises(TypeError, match=r"tensors\['a'\] is a list"):
        DataProto.from_dict({"a": [1, 2]})


def test_from_single_dict_splits_by_type():
    d = DataProto.from_single_dict({"x": torch.ones(3, 2), "s": np.array(["a", "b", "c"], dtype=object),
                                    "l": [1, 2, 3]}, meta_info={"k": 1})
    assert list(d.batch.keys()) == ["x"]
    assert sorted(d.non_tensor_batch) == ["l", "s"]
    with pytest.raises(TypeError, match=r"data\['bad'\]"):
        DataProto.from_single_dict({"x": torch.ones(3), "bad": 3})


def test_non_tensor_only_dataproto():
    d = DataProto.from_dict(non_tensors={"s": ["a", "b"]})
    assert len(d) == 2 and d.batch is None
    assert d.repeat(2).non_tensor_batch["s"].tolist() == ["a", "a", "b", "b"]


# ---------------------------------------------------------------- indexing
def test_int_index_gives_item():
    item = make()[2]
    assert isinstance(item, DataProtoItem)
    assert torch.equal(item.batch["x"], torch.tensor([4.0, 5.0]))
    assert item.non_tensor_batch["gt"] == {"ans": 2}
    with pytest.raises(IndexError):
        make()[6]


def test_slice_list_tensor_and_bool_index():
    d = make()
    assert d[1:3].non_tensor_batch["uid"].tolist() == ["u1", "u2"]
    assert d[[4, 0]].batch["ids"].tolist() == [4, 0]
    assert d[torch.tensor([5, 1])].non_tensor_batch["uid"].tolist() == ["u5", "u1"]
    mask = np.array([True, False] * 3)
    assert d[mask].batch["ids"].tolist() == [0, 2, 4]
    with pytest.raises(IndexError, match="boolean index has 2 entries"):
        d[np.array([True, False])]
    with pytest.raises(IndexError, match="out of range"):
        d[[0, 9]]
    assert [it.non_tensor_batch["uid"] for it in make(3)] == ["u0", "u1", "u2"]


# ---------------------------------------------------------------- keys
def test_select_and_missing_keys():
    d = make()
    s = d.select(batch_keys=["x"], non_tensor_batch_keys=["uid"], meta_info_keys=[])
    assert list(s.batch.keys()) == ["x"] and list(s.non_tensor_batch) == ["uid"] and s.meta_info == {}
    assert len(d.batch.keys()) == 2  # the source is untouched
    with pytest.raises(KeyError, match=r"batch has no key\(s\) \['nope'\]"):
        d.select(batch_keys=["nope"])
    deep = d.select(deepcopy=True)
    deep.batch["x"][0, 0] = 100
    deep.non_tensor_batch["gt"][0]["ans"] = -1
    assert d.batch["x"][0, 0] == 0 and d.non_tensor_batch["gt"][0]["ans"] == 0


def test_pop_removes_and_returns():
    d = make()
    p = d.pop(batch_keys=["x"], non_tensor_batch_keys=["gt"], meta_info_keys=["temperature"])
    assert list(p.batch.keys()) == ["x"] and list(p.non_tensor_batch) == ["gt"]
    assert p.meta_info == {"temperature": 1.0}
    assert list(d.batch.keys()) == ["ids"] and list(d.non_tensor_batch) == ["uid"] and d.meta_info == {}
    assert len(d) == len(p) == 6
    with pytest.raises(KeyError, match="non_tensor_batch has no key"):
        d.pop(non_tensor_batch_keys=["gt"])


def test_union_merges_and_refuses_conflicts():
    a = make()
    b = DataProto.from_dict({"x": a.batch["x"].clone(), "y": torch.ones(6)}, {"uid": a.non_tensor_batch["uid"],
                                                                           "z": list(range(6))}, {"temperature": 1.0})
    out = a.union(b)
    assert out is a and sorted(a.batch.keys()) == ["ids", "x", "y"] and "z" in a.non_tensor_batch
    conflict = DataProto.from_dict({"y": torch.zeros(6)})
    with pytest.raises(ValueError, match=r"batch\['y'\] differs"):
        a.union(conflict)
    with pytest.raises(ValueError, match=r"non_tensor_batch\['uid'\] differs"):
        a.union(DataProto.from_dict(non_tensors={"uid": ["q"] * 6}))
    with pytest.raises(ValueError, match=r"meta_info\['temperature'\] differs"):
        a.union(DataProto(meta_info={"temperature": 0.5}))
    with pytest.raises(ValueError, match="cannot union DataProtos of 6 and 2 rows"):
        a.union(make(2))


# ---------------------------------------------------------------- splitting and joining
def test_chunk_split_concat_roundtrip():
    d = make()
    parts = d.chunk(3)
    assert [len(p) for p in parts] == [2, 2, 2]
    back = DataProto.concat(parts)
    assert torch.equal(back.batch["x"], d.batch["x"])
    assert back.non_tensor_batch["uid"].tolist() == d.non_tensor_batch["uid"].tolist()
    assert [len(p) for p in d.split(4)] == [4, 2]
    with pytest.raises(ValueError, match="cannot chunk 6 rows into 4 equal parts; pad first"):
        d.chunk(4)  # unless padding is enabled (tests/test_protocol_verl_api.py)
    with pytest.raises(ValueError, match="positive"):
        d.split(0)


def test_concat_errors_and_meta_merge():
    with pytest.raises(ValueError, match="at least one"):
        DataProto.concat([])
    with pytest.raises(ValueError, match="part 1 has non-tensor keys"):
        DataProto.concat([make(2), DataProto.from_dict({"x": torch.zeros(2, 2), "ids": torch.zeros(2)})])
    merged = DataProto.concat([make(2, {"a": 1}), make(2, {"a": 1, "b": 3})])
    assert merged.meta_info == {"a": 1, "b": 3}
    with pytest.raises(ValueError, match="Conflicting values for meta_info key 'a'"):
        DataProto.concat([make(2, {"a": 1}), make(2, {"a": 2})])


def test_repeat_interleaved_and_tiled():
    d = make(3)
    r = d.repeat(2, interleave=True)
    assert r.batch["ids"].tolist() == [0, 0, 1, 1, 2, 2]
    assert r.non_tensor_batch["uid"].tolist() == ["u0", "u0", "u1", "u1", "u2", "u2"]
    t = d.repeat(2, interleave=False)
    assert t.batch["ids"].tolist() == [0, 1, 2, 0, 1, 2]
    assert t.meta_info == d.meta_info


def test_reorder_in_place():
    d = make(4)
    d.reorder(torch.tensor([3, 2, 1, 0]))
    assert d.batch["ids"].tolist() == [3, 2, 1, 0]
    assert d.non_tensor_batch["uid"].tolist() == ["u3", "u2", "u1", "u0"]


def test_padding_to_divisor_and_back():
    d = make(5)
    padded, pad = pad_dataproto_to_divisor(d, 4)
    assert pad == 3 and len(padded) == 8
    assert padded.batch["ids"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert unpad_dataproto(padded, pad).batch["ids"].tolist() == [0, 1, 2, 3, 4]
    same, zero = pad_dataproto_to_divisor(d, 5)
    assert zero == 0 and same is d
    tiny, pad = pad_dataproto_to_divisor(make(1), 4)  # more padding than rows
    assert pad == 3 and tiny.batch["ids"].tolist() == [0, 0, 0, 0]
    empty, zero = pad_dataproto_to_divisor(make(0), 2)  # 0 rows divide by anything (veRL)
    assert zero == 0 and len(empty) == 0


def test_make_iterator_covers_every_row_each_epoch():
    d = make(6)
    batches = list(d.make_iterator(mini_batch_size=2, epochs=2, seed=0, dataloader_kwargs={"shuffle": True}))
    assert len(batches) == 6
    first_epoch = sorted(i for b in batches[:3] for i in b.batch["ids"].tolist())
    assert first_epoch == list(range(6))
    again = list(d.make_iterator(mini_batch_size=2, epochs=2, seed=0, dataloader_kwargs={"shuffle": True}))
    assert [b.batch["ids"].tolist() for b in again] == [b.batch["ids"].tolist() for b in batches]
    with pytest.raises(ValueError, match="do not divide"):
        next(d.make_iterator(mini_batch_size=4, epochs=1))


# ---------------------------------------------------------------- pickling and Ray
def test_pickle_roundtrip_all_dtypes_and_images():
    images = as_object_array([[Image.new("RGB", (4, 4), "red")], [{"bytes": png_bytes("blue")}]])
    d = DataProto.from_dict(
        {"f": torch.randn(2, 3), "h": torch.randn(2, 3).to(torch.bfloat16), "i": torch.arange(2),
         "b": torch.tensor([True, False]), "nc": torch.randn(3, 2).t()},
        {"images": images, "raw": ["a", "b"]}, {"step": 3})
    e = pickle.loads(pickle.dumps(d))
    for k in d.batch.keys():
        assert e.batch[k].dtype == d.batch[k].dtype and torch.equal(e.batch[k], d.batch[k]), k
    assert e.non_tensor_batch["images"][0][0].getpixel((0, 0)) == (255, 0, 0)
    assert e.non_tensor_batch["images"][1][0]["bytes"] == png_bytes("blue")
    assert e.meta_info == {"step": 3}
    e.batch["f"].add_(1)  # received tensors are writable


def test_pickle_is_cheap_for_raw_image_bytes():
    """Raw images travel as their encoded bytes: the pickle is about the size of the PNGs, not pixels."""
    big = Image.new("RGB", (512, 512), "green")
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    d = DataProto.from_dict({"x": torch.zeros(4)}, {"images": [[{"bytes": buf.getvalue()}]] * 4})
    assert len(pickle.dumps(d)) < 4 * len(buf.getvalue()) + 4096
    assert len(pickle.dumps(d)) < 512 * 512 * 3 // 10


def test_transfer_through_ray(ray_local):
    ray = ray_local

    @ray.remote(num_cpus=0)
    def add_rows(data: DataProto) -> DataProto:
        data.batch["x"] += 1  # must be writable on the receiving side
        data.non_tensor_batch["uid"] = as_object_array([u + "!" for u in data.non_tensor_batch["uid"]])
        return data

    d = make()
    d.batch["h"] = torch.ones(6, dtype=torch.bfloat16)
    out = ray.get(add_rows.remote(d))
    assert torch.equal(out.batch["x"], d.batch["x"] + 1)
    assert out.batch["h"].dtype == torch.bfloat16
    assert out.non_tensor_batch["uid"][0] == "u0!"
    assert out.meta_info == d.meta_info
    put = ray.get(ray.put(d))  # zero-copy buffers from the object store come back writable
    put.batch["x"].add_(1)
