"""veRL's model and rollout keys made real: override_config reaches the HF config, ignore_eos generates to length."""

import torch

from verlvl.engine.loading import load_model, override_hf_config
from verlvl.workers.config import RolloutConfig
from verlvl.workers.rollout.hf_rollout import HFRollout


def test_override_config_sets_the_hf_config_and_its_text_and_vision_parts(tiny_vl_path):
    from transformers import AutoConfig

    config = override_hf_config(AutoConfig.from_pretrained(tiny_vl_path),
                                {"attention_dropout": 0.25, "vision_config": {"hidden_act": "gelu"}})
    assert config.attention_dropout == 0.25 and config.text_config.attention_dropout == 0.25
    assert config.vision_config.hidden_act == "gelu"
    model = load_model(str(tiny_vl_path), override_config={"attention_dropout": 0.25}, empty=True)
    assert model.config.text_config.attention_dropout == 0.25
    assert load_model(str(tiny_vl_path), empty=True).config.text_config.attention_dropout == 0.0


def test_ignore_eos_generates_response_length_tokens_past_eos(tiny_vl, prompts):
    processor, model = tiny_vl
    eos = processor.tokenizer.eos_token_id
    config = RolloutConfig(n=2, response_length=6, ignore_eos=True)
    with torch.no_grad():  # make EOS the likeliest token: a normal rollout would stop at once
        bias = model.lm_head.weight[eos].clone()
        model.lm_head.weight[eos] += 50 * model.lm_head.weight[eos].sign()
    try:
        out = HFRollout(model, processor.tokenizer, processor, config).generate_sequences(prompts)
        stopped = HFRollout(model, processor.tokenizer, processor,
                            RolloutConfig(n=2, response_length=6)).generate_sequences(prompts)
    finally:
        with torch.no_grad():
            model.lm_head.weight[eos] = bias
    assert out.batch["response_mask"].sum(-1).tolist() == [6] * 8
    assert stopped.batch["response_mask"].sum(-1).float().mean() < 6
