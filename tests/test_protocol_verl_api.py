"""DataProto behaves as veRL's: uneven chunks, metric merging, repeats, folding, padding, files, TensorDicts."""

import numpy as np
import pytest
import torch
from PIL import Image
from tensordict import NonTensorData, NonTensorStack, TensorDict

from verlvl.protocol import (DataProto, DataProtoConfig, DataProtoError, fold_batch_dim, pad_dataproto_to_divisor,
                             unfold_batch_dim, union_numpy_dict, union_tensor_dict, unpad_dataproto)


def rows(n, meta=None, **kw):
    return DataProto.from_dict({"ids": torch.arange(n), "x": torch.arange(n * 2).view(n, 2).float()},
                               {"tag": [f"t{i}" for i in range(n)]}, meta if meta is not None else {"k": 1}, **kw)


@pytest.fixture
def global_padding():
    DataProtoConfig.auto_padding = True
    yield
    DataProtoConfig.auto_padding = False


# ---------------------------------------------------------------- chunk
def test_uneven_chunk_is_refused_unless_padding_is_enabled():
    with pytest.raises(AssertionError, match="cannot chunk 6 rows into 4 equal parts"):  # veRL code catches asserts
        rows(6).chunk(4)
    assert not rows(6).is_padding_enabled()


def test_uneven_chunk_with_auto_padding_splits_like_torch_chunk():
    parts = rows(10, auto_padding=True).chunk(4)
    assert [p.batch["ids"].tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [p.non_tensor_batch["tag"].tolist() for p in parts][-1] == ["t9"]
    assert all(p.meta_info["k"] == 1 for p in parts)
    with pytest.raises(DataProtoError, match="torch.chunk splits 6 rows into 3 parts, not 4"):
        rows(6, auto_padding=True).chunk(4)  # veRL fails here too; padding first makes it work
    padded = rows(6, auto_padding=True)
    padded.padding(2)
    assert [len(p) for p in padded.chunk(4)] == [2, 2, 2, 2]


def test_global_auto_padding_and_non_tensor_only_chunks(global_padding, monkeypatch):
    assert rows(5).is_padding_enabled()
    only_tags = DataProto.from_dict(non_tensors={"tag": list("abcdefghij")})
    assert [len(p) for p in only_tags.chunk(4)] == [3, 3, 2, 2]  # np.array_split, as veRL without tensors
    DataProtoConfig.auto_padding = False
    monkeypatch.setenv("VERL_AUTO_PADDING", "1")
    assert rows(5).is_padding_enabled()
    with pytest.raises(ValueError, match="True or False"):
        DataProtoConfig.auto_padding = "yes"


def test_padding_repeats_the_first_or_last_row():
    d = rows(3)
    d.padding(2)
    assert d.batch["ids"].tolist() == [0, 1, 2, 2, 2] and d.non_tensor_batch["tag"][-1] == "t2"
    d = rows(3)
    d.padding(1, padding_candidate="first")
    assert d.batch["ids"].tolist() == [0, 1, 2, 0] and d.meta_info == {"k": 1}


def test_pad_to_divisor_cycles_rows_and_unpads():
    padded, pad = pad_dataproto_to_divisor(rows(3), 7)
    assert pad == 4 and padded.batch["ids"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert padded.meta_info == {"k": 1}
    assert unpad_dataproto(padded, pad).non_tensor_batch["tag"].tolist() == ["t0", "t1", "t2"]
    with_metrics, _ = pad_dataproto_to_divisor(rows(3, {"metrics": {"a": 1.0}}), 2)
    assert with_metrics.meta_info == {"metrics": {"a": 1.0}}  # padding does not merge metrics with itself


# ---------------------------------------------------------------- length and construction
def test_length_of_a_dataproto_without_tensors():
    labels = np.array(["a", "b", "c"], dtype=object)
    assert len(DataProto(batch=None, non_tensor_batch={"labels": labels})) == 3
    assert len(DataProto(batch=None, non_tensor_batch={})) == 0
    assert len(DataProto(batch=None, non_tensor_batch=None, meta_info=None)) == 0
    with pytest.raises(ValueError, match=r"non_tensor_batch\['b'\] has 2 entries but non_tensor_batch\['a'\] has 3"):
        DataProto(non_tensor_batch={"a": labels, "b": labels[:2]})


def test_inconsistent_rows_are_refused_at_construction():
    with pytest.raises(AssertionError, match=r"tensors\['b'\] has 4 rows but tensors\['a'\] has 3"):
        DataProto.from_dict({"a": torch.zeros(3), "b": torch.zeros(4, 2)})
    with pytest.raises(AssertionError, match="one batch dimension"):
        DataProto.from_dict({"a": torch.zeros(3, 2)}, num_batch_dims=2)
    with pytest.raises(AssertionError, match="one batch dimension"):
        DataProto(batch=TensorDict({"a": torch.zeros(3, 2)}, batch_size=[3, 2]))
    with pytest.raises(AssertionError, match=r"non_tensor_batch\['s'\] has 2 entries but the batch has 3"):
        DataProto(batch=TensorDict({"a": torch.zeros(3)}, batch_size=[3]), non_tensor_batch={"s": ["x", "y"]})


def test_subclasses_keep_their_type():
    class MyProto(DataProto):
        pass

    d = MyProto.from_single_dict({"x": torch.zeros(4), "s": np.array(list("abcd"), dtype=object)})
    assert type(d) is MyProto
    assert all(type(p) is MyProto for p in [d[1:], d[[0, 1]], d.chunk(2)[0], MyProto.concat([d, d]), d.repeat(2),
                                            d.select(), d.sample_level_repeat([1, 0, 2, 1])])


# ---------------------------------------------------------------- concat and metrics
def test_concat_merges_worker_metrics_into_lists():
    parts = [rows(2, {"metrics": [{"loss": 0.5, "acc": 0.9}], "flag": True}),
             rows(2, {"flag": True}),  # a worker without metrics
             rows(2, {"metrics": {"loss": 0.7, "acc": 0.8}, "flag": True, "extra": "B"})]
    merged = DataProto.concat(parts)
    assert merged.meta_info == {"metrics": {"loss": [0.5, 0.7], "acc": [0.9, 0.8]}, "flag": True, "extra": "B"}
    assert merged.batch["ids"].tolist() == [0, 1, 0, 1, 0, 1]
    first_without = DataProto.concat([rows(1, {}), rows(1, {"metrics": {"loss": 1.0}})])
    assert first_without.meta_info == {"metrics": {"loss": [1.0]}}


def test_concat_refuses_conflicting_meta_info():
    with pytest.raises(AssertionError, match="Conflicting values for meta_info key 'config'"):
        DataProto.concat([rows(2, {"config": "A"}), rows(2, {"config": "B"})])
    nan = DataProto.concat([rows(1, {"v": float("nan")}), rows(1, {"v": float("nan")})])
    assert np.isnan(nan.meta_info["v"])  # NaN equals NaN when merging


def test_worker_group_returns_metrics_per_rank(ray_local):
    """DP_COMPUTE_PROTO concatenates the ranks' outputs: one metric value per rank, in rank order."""
    from verlvl.single_controller import (Dispatch, RayClassWithInitArgs, RayResourcePool, RayWorkerGroup, Worker,
                                          register)
    from verlvl.trainer.worker_metrics import reduce_worker_metrics

    class Reporter(Worker):
        @register(Dispatch.DP_COMPUTE_PROTO)
        def report(self, data: DataProto) -> DataProto:
            metrics = {"loss": float(self.rank), "m/max_memory_allocated_gb": 1.0 + self.rank}
            return DataProto(meta_info={"metrics": metrics})

    pool = RayResourcePool([2], use_gpu=False)
    group = RayWorkerGroup(pool, RayClassWithInitArgs(Reporter))
    try:
        metrics = group.report(rows(4)).meta_info["metrics"]
        assert metrics == {"loss": [0.0, 1.0], "m/max_memory_allocated_gb": [1.0, 2.0]}
        assert reduce_worker_metrics(metrics) == {"loss": 0.5, "m/max_memory_allocated_gb": 2.0}
    finally:
        group.shutdown()
        pool.release()


# ---------------------------------------------------------------- repeats, folding, column chunks
def test_sample_level_repeat_from_lists_tensors_and_arrays():
    d = rows(3, {"info": "x"})
    for counts in ([3, 1, 2], (3, 1, 2), torch.tensor([3, 1, 2]), np.array([3, 1, 2])):
        out = d.sample_level_repeat(counts)
        assert out.batch["ids"].tolist() == [0, 0, 0, 1, 2, 2]
        assert out.non_tensor_batch["tag"].tolist() == ["t0", "t0", "t0", "t1", "t2", "t2"]
        assert out.meta_info == {"info": "x"}
    assert len(d.sample_level_repeat([0, 0, 1])) == 1
    with pytest.raises(ValueError, match="one count per row"):
        d.sample_level_repeat([1, 2])


def test_fold_reorder_unfold_keeps_groups_together():
    d = rows(3, {"info": "x"}).repeat(2, interleave=True)
    folded = fold_batch_dim(d, new_batch_size=3)
    assert len(folded) == 3 and folded.batch["x"].shape == (3, 2, 2)
    assert folded.non_tensor_batch["tag"].tolist() == [["t0", "t0"], ["t1", "t1"], ["t2", "t2"]]
    folded.reorder(torch.tensor([1, 2, 0]))
    back = unfold_batch_dim(folded, batch_dims=2)
    assert back.batch["ids"].tolist() == [1, 1, 2, 2, 0, 0]
    assert back.non_tensor_batch["tag"].tolist() == ["t1", "t1", "t2", "t2", "t0", "t0"]
    assert back.meta_info == {"info": "x"}
    with pytest.raises(ValueError, match="6 rows do not fold into 4 equal groups"):
        fold_batch_dim(d, 4)


def test_unfold_column_chunks_splits_named_keys_and_repeats_the_rest():
    d = DataProto.from_dict({"a": torch.arange(12).view(3, 4), "b": torch.arange(6).view(3, 2)},
                            {"lab": np.array([["a1", "a2"], ["b1", "b2"], ["c1", "c2"]], dtype=object),
                             "tag": ["a", "b", "c"]})
    out = d.unfold_column_chunks(2, split_keys=["a", "lab"])
    assert out.batch["a"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert out.batch["b"].tolist() == [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]
    assert out.non_tensor_batch["lab"].tolist() == [["a1"], ["a2"], ["b1"], ["b2"], ["c1"], ["c2"]]
    assert out.non_tensor_batch["tag"].tolist() == ["a", "a", "b", "b", "c", "c"]
    lists = DataProto.from_dict(non_tensors={"lab": [["a1", "a2"], ["b1", "b2"]]})  # one list per row
    assert lists.unfold_column_chunks(2, ["lab"]).non_tensor_batch["lab"].tolist() == [["a1"], ["a2"], ["b1"], ["b2"]]
    with pytest.raises(ValueError, match=r"non_tensor_batch\['lab'\] row 0 has no length that divides by n_split=3"):
        lists.unfold_column_chunks(3, ["lab"])


# ---------------------------------------------------------------- indexing, keys, union
def test_indexing_by_every_index_type_gives_one_batch_dimension():
    d = rows(4)
    for index in (np.array([True, False, True, False]), np.array([0, 2]), [True, False, True, False], [0, 2],
                  torch.tensor([True, False, True, False]), torch.tensor([0, 2])):
        picked = d[index]
        assert picked.batch.batch_size == torch.Size([2]) and picked.batch["ids"].tolist() == [0, 2]
    assert d.slice(1, None, 2).batch["ids"].tolist() == [1, 3]
    assert len(d[[]]) == 0
    with pytest.raises(TypeError, match="not a str"):
        d["ids"]


def test_rename_and_non_tensor_only_select_and_pop():
    d = rows(2).rename("x", "features")
    assert sorted(d.batch.keys()) == ["features", "ids"]
    with pytest.raises(ValueError, match="2 old keys but 1 new keys"):
        d.rename(["ids", "features"], ["a"])
    labels = DataProto.from_dict(non_tensors={"labels": ["a", "b", "c"]}, meta_info={"info": 1})
    assert labels.select(non_tensor_batch_keys=["labels"]).non_tensor_batch["labels"].tolist() == ["a", "b", "c"]
    assert labels.pop(non_tensor_batch_keys=["labels"]).non_tensor_batch["labels"].tolist() == ["a", "b", "c"]
    assert labels.non_tensor_batch == {}


def test_union_helpers_compare_deeply():
    obs = torch.randn(4, 2)
    union_tensor_dict(TensorDict({"obs": obs}, [4]), TensorDict({"obs": obs.clone(), "r": torch.ones(4)}, [4]))
    with pytest.raises(AssertionError, match=r"batch\['obs'\] differs"):
        union_tensor_dict(TensorDict({"obs": obs}, [4]), TensorDict({"obs": obs + 1}, [4]))
    nested = np.array([1, "hello", np.array([2, 3])], dtype=object)
    union_numpy_dict({"a": nested}, {"a": np.array([1, "hello", np.array([2, 3])], dtype=object)})
    union_numpy_dict({"n": np.array([1.0, np.nan])}, {"n": np.array([1.0, np.nan])})  # NaN in place: equal
    for other in (np.array([np.nan, 1.0]), np.array([1.0, 2.0]), np.array([1, 2])):
        with pytest.raises(AssertionError, match=r"non_tensor_batch\['n'\] differs"):
            union_numpy_dict({"n": np.array([1.0, np.nan])}, {"n": other})
    loop1, loop2, flat = (np.array([None], dtype=object) for _ in range(3))
    loop1[0], loop2[0] = loop1, loop2
    union_numpy_dict({"c": loop1}, {"c": loop2})  # self-referencing arrays: no RecursionError
    with pytest.raises(AssertionError):
        union_numpy_dict({"c": loop1}, {"c": flat})


# ---------------------------------------------------------------- files
def test_save_and_load_roundtrip(tmp_path):
    d = DataProto.from_dict(
        {"obs": torch.tensor([[1, 2], [3, 4], [5, 6]]), "h": torch.randn(3).to(torch.bfloat16)},
        {"labels": ["a", "b", "c"], "turns": [[], [0.5], [0.8, 0.9]], "info": [{"acc": 1.0}, {"acc": 0.0}, {}],
         "num": np.array([2, 4, 6], dtype=np.int32), "s": np.array(["x", "y", "z"])},
        {"info": "test_info", "metrics": {"loss": [0.5]}})
    path = tmp_path / "data.pt"
    d.save_to_disk(path)
    e = DataProto.load_from_disk(path)
    assert torch.equal(e.batch["obs"], d.batch["obs"]) and torch.equal(e.batch["h"], d.batch["h"])
    for key in d.non_tensor_batch:
        assert e.non_tensor_batch[key].dtype == d.non_tensor_batch[key].dtype, key
        assert e.non_tensor_batch[key].tolist() == d.non_tensor_batch[key].tolist(), key
    assert e.non_tensor_batch["turns"].shape == (3,)
    assert e.meta_info == d.meta_info
    folded = fold_batch_dim(rows(4), 2)
    folded.save_to_disk(path)
    assert DataProto.load_from_disk(path).non_tensor_batch["tag"].tolist() == [["t0", "t1"], ["t2", "t3"]]
    only_tags = DataProto.from_dict(non_tensors={"tag": ["a"]})
    only_tags.save_to_disk(path)
    assert DataProto.load_from_disk(path).batch is None


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this would write a file
        return (open, (self.path, "w"))


def test_loading_never_unpickles_objects_unless_asked(tmp_path):
    """A file from elsewhere cannot run code: rows of arbitrary objects need allow_pickle=True."""
    images = DataProto.from_dict({"x": torch.zeros(1)}, {"images": [[Image.new("RGB", (2, 2), "red")]]})
    path = tmp_path / "images.pt"
    images.save_to_disk(path)
    with pytest.raises(ValueError, match=r"If you wrote this file yourself: load_from_disk\(path, allow_pickle=True\)"):
        DataProto.load_from_disk(path)
    assert DataProto.load_from_disk(path, allow_pickle=True).non_tensor_batch["images"][0][0].size == (2, 2)
    marker = tmp_path / "ran"
    evil = DataProto.from_dict({"x": torch.zeros(1)}, {"o": [_Marker(str(marker))]})
    evil.save_to_disk(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="allow_pickle"):
        DataProto.load_from_disk(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file written by DataProto.save_to_disk"):
        DataProto.load_from_disk(tmp_path / "other.pt")


# ---------------------------------------------------------------- TensorDict
def test_to_tensordict_and_back_with_nested_data():
    d = DataProto.from_dict(
        {"obs": torch.tensor([1, 2, 3])},
        {"labels": ["a", "b", "c"], "turn_scores": [[], [0.5, 0.8], [0.9]],
         "reward_extra_info": [{"acc": 1.0}, {"acc": 0.0}, {"acc": 1.0}],
         "raw_prompt": [[{"content": "Q1", "role": "user"}],
                        [{"content": "Q2", "role": "user"}, {"content": "A2", "role": "assistant"}],
                        [{"content": "Q3", "role": "user"}]],
         "num_turns": np.array([2, 4, 1], dtype=np.int32)},
        {"global_steps": 42, "name": "abc"})
    td = d.to_tensordict()
    assert torch.equal(td["obs"], torch.tensor([1, 2, 3]))
    assert td["labels"] == ["a", "b", "c"] and td["name"] == "abc"
    assert list(td["turn_scores"][1]) == [0.5, 0.8] and dict(td["reward_extra_info"][0]) == {"acc": 1.0}
    assert dict(td["raw_prompt"][1][1]) == {"content": "A2", "role": "assistant"}
    back = DataProto.from_tensordict(td)
    assert torch.equal(back.batch["obs"], d.batch["obs"])
    for key in ("labels", "turn_scores", "reward_extra_info", "raw_prompt"):
        assert back.non_tensor_batch[key].tolist() == d.non_tensor_batch[key].tolist(), key
    assert back.non_tensor_batch["turn_scores"].shape == (3,)
    assert back.meta_info == {"global_steps": 42, "name": "abc"}


def test_from_a_tensordict_built_by_hand():
    td = TensorDict({"obs": torch.arange(2)}, batch_size=[2])
    td["tag"] = NonTensorStack.from_list([NonTensorData("a"), NonTensorData("a")])
    td["step"] = NonTensorData(3)
    d = DataProto.from_tensordict(td, meta_info={"extra": True})
    assert d.non_tensor_batch["tag"].tolist() == ["a", "a"] and d.meta_info == {"extra": True, "step": 3}
    with pytest.raises(ValueError, match=r"key\(s\) \['tag'\] appear in more than one"):
        DataProto.from_dict({"tag": torch.zeros(2)}, meta_info={"tag": 1}).to_tensordict()
