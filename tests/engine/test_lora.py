"""LoRA in the engine (one process): adapters on the language model only, the base model with them off,
merged weights for an engine without LoRA, and a peft-loadable export, each against real forwards."""

import pytest
import torch

from verlvl.engine.loading import load_model, parameters_on_meta
from verlvl.engine.lora import (LoraSpec, adapter_state_dict, adapters_disabled, add_adapters, export_adapter,
                                load_adapter, merged_weights)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.fixture
def ids():
    return torch.randint(10, 200, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def adapted(tiny_vl_path):
    """The tiny model with rank-4 adapters whose B is no longer zero (as after some updates)."""
    model = add_adapters(load_model(str(tiny_vl_path)), LoraSpec(rank=4, alpha=8))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


def test_only_language_model_adapters_train_and_a_fresh_adapter_changes_nothing(tiny_vl_path, ids):
    base = load_model(str(tiny_vl_path)).eval()
    model = add_adapters(load_model(str(tiny_vl_path)), LoraSpec(rank=4, alpha=8)).eval()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert not any("visual" in n for n, _ in model.named_parameters() if ".lora_" in n)  # the vision tower: never
    assert any("language_model" in n for n in trainable)
    torch.testing.assert_close(logits(model, ids), logits(base, ids), rtol=0, atol=0)  # lora_B starts at zero


def test_target_modules_that_match_nothing_are_refused(tiny_vl_path):
    with pytest.raises(ValueError, match="target_modules"):
        add_adapters(load_model(str(tiny_vl_path)), LoraSpec(rank=4, target_modules=("not_a_layer",)))


def test_the_adapter_free_model_is_the_base(tiny_vl_path, adapted, ids):
    base = load_model(str(tiny_vl_path)).eval()
    assert (logits(adapted, ids) - logits(base, ids)).abs().max() > 1e-3  # the adapters do something
    with adapters_disabled(adapted):
        torch.testing.assert_close(logits(adapted, ids), logits(base, ids), rtol=0, atol=0)
    assert all(p.requires_grad == (".lora_" in n) for n, p in adapted.named_parameters())  # as before


def test_merged_weights_load_into_the_plain_model_and_compute_the_same(tiny_vl_path, adapted, ids):
    plain = load_model(str(tiny_vl_path)).eval()
    merged = dict(merged_weights(adapted, adapted.named_parameters()))
    assert set(merged) == {n for n, _ in plain.named_parameters()}  # the base model's names, nothing more
    plain.load_state_dict(merged, strict=False)
    torch.testing.assert_close(logits(plain, ids), logits(adapted, ids), rtol=1e-5, atol=1e-5)


def test_the_export_loads_with_peft_and_back_into_an_injected_model(tiny_vl_path, adapted, ids, tmp_path):
    from peft import PeftModel

    export_adapter(tmp_path / "adapter", adapted.lora_spec, adapter_state_dict(adapted.named_parameters()),
                   str(tiny_vl_path))
    with_peft = PeftModel.from_pretrained(load_model(str(tiny_vl_path)), str(tmp_path / "adapter")).eval()
    torch.testing.assert_close(logits(with_peft, ids), logits(adapted, ids), rtol=1e-6, atol=1e-6)
    again = add_adapters(load_model(str(tiny_vl_path)), adapted.lora_spec).eval()
    load_adapter(again, str(tmp_path / "adapter"))
    torch.testing.assert_close(logits(again, ids), logits(adapted, ids), rtol=0, atol=0)


def test_adapters_can_be_added_on_the_meta_device(tiny_vl_path):
    model = load_model(str(tiny_vl_path), empty=True)
    with parameters_on_meta():
        add_adapters(model, LoraSpec(rank=2))
    assert all(p.device.type == "meta" for n, p in model.named_parameters() if ".lora_" in n)
