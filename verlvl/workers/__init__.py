"""FSDP2 workers (actor, rollout, reference, critic) and the rollout engines."""
