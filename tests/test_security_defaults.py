"""Security defaults (issue 19, item 7): no model code runs unless trust_remote_code is set, data bytes are
never unpickled, a model's output is never executed, and a local Ray cluster starts without a dashboard."""

import json
import os
import pickle

import pytest

from verlvl.data.images import DataError, open_image
from verlvl.engine.loading import load_model


class _Marker:
    """Unpickling this creates the marker file: proof that something executed data."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_a_checkpoint_with_custom_code_is_refused_without_trust_remote_code(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}}))
    with pytest.raises(Exception):
        load_model(str(tmp_path))  # trust_remote_code defaults to False, as the config's default
    assert not marker.exists()


def test_image_bytes_that_are_a_pickle_are_rejected_not_unpickled(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Marker(marker))
    with pytest.raises(DataError, match="row 3"):
        open_image({"bytes": payload}, "data.parquet row 3").load()
    assert not marker.exists()


def test_a_response_that_is_code_is_scored_not_run(tmp_path):
    from verlvl.reward.scorers import default_compute_score

    marker = tmp_path / "ran"
    response = f"__import__('os').system('touch {marker}') \\boxed{{__import__('os').system('touch {marker}')}}"
    for source in ("hiyouga/geometry3k", "openai/gsm8k"):
        out = default_compute_score(source, response, "3")
        assert (out["score"] if isinstance(out, dict) else out) <= 0.0
    assert not marker.exists()


@pytest.mark.slow
def test_a_local_ray_cluster_starts_without_a_dashboard(monkeypatch):
    import ray

    from verlvl.utils.ray_init import init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    try:
        init_ray(num_cpus=2)
        assert not ray.get_runtime_context().get_node_id() is None
        assert ray.worker.get_dashboard_url() in ("", None)
    finally:
        ray.shutdown()
