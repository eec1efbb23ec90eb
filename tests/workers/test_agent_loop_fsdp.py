"""The hf agent loop on an FSDP2-sharded actor in 2 processes (gloo) whose ranks run different numbers of turns:
nothing inside the loop may be a collective, or the rank with more turns waits forever for its peer."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.engine.test_fsdp_engine import _free_port

pytestmark = [pytest.mark.timeout(300)]


def _run(rank: int, port: int, path: str, train_file: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        from tests.workers.agent_helpers import ScriptedTurns, shapes_batch
        from tests.workers.test_agent_loop import CALC
        from verlvl.engine.fsdp import apply_fsdp2
        from verlvl.engine.loading import load_model, load_sharded
        from verlvl.models.processor import load_processor
        from verlvl.tools.builtin import CalculatorTool
        from verlvl.workers.config import MultiTurnConfig, RolloutConfig
        from verlvl.workers.rollout.agent_hf import HFTurns
        from verlvl.workers.rollout.agent_rollout import AgentLoopRollout
        from verlvl.workers.rollout.hf_rollout import HFRollout

        model = load_sharded(lambda empty: load_model(path, empty=empty), lambda m: apply_fsdp2(m), "cpu")
        processor = load_processor(path)
        tok = processor.tokenizer
        config = RolloutConfig(response_length=240, multi_turn=MultiTurnConfig(enable=True))
        hf = HFRollout(model, tok, processor, config)
        scripts = [CALC, CALC, "red"] if rank == 0 else ["red"]  # rank 0: 3 turns, rank 1: 1
        turns = HFTurns(hf, lambda: [ScriptedTurns(tok, scripts)])
        rollout = AgentLoopRollout(hf, turns, tok, processor, config, hf.pad_id, tools=[CalculatorTool({})])
        out = rollout.generate_sequences(shapes_batch({"train": train_file}, processor, rows=1))
        dist.barrier()  # both ranks got here
        with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
            json.dump({"num_turns": out.non_tensor_batch["__num_turns__"].tolist()}, f)
    finally:
        dist.destroy_process_group()


def test_ranks_with_different_numbers_of_turns_do_not_wait_for_each_other(tiny_vl_path, shapes_files, tmp_path):
    mp.spawn(_run, args=(_free_port(), str(tiny_vl_path), shapes_files["train"], str(tmp_path)), nprocs=2, join=True)
    turns = [json.loads((tmp_path / f"{rank}.json").read_text())["num_turns"] for rank in (0, 1)]
    assert turns == [[6], [2]]
