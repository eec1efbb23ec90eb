"""What a worker does to a model: device placement, loading, FSDP2, chunked log-probs, state-dict streaming,
the rollout/train switch. Workers keep only roles and losses; everything device-specific lives here."""
