"""Log-probs and entropy of chosen tokens under softmax(logits / T), computed in chunks of positions, with a
hand-written backward that writes each chunk's gradient into one buffer: besides the model's logits and
their gradient, only one fp32 chunk exists at a time (no full-vocabulary fp32 copy of a micro-batch)."""

from __future__ import annotations

import torch

# Positions per chunk of the vocabulary maths: about 64 MiB of fp32 logits at a time (a few such temporaries
# exist at once; at 152k vocabulary that is ~110 positions per chunk).
CHUNK_BYTES = 64 << 20


def mask_never_sampled(logits: torch.Tensor, token_ids) -> torch.Tensor:
    """Logits of tokens no rollout may sample (vision specials) at the lowest finite value: probability
    0, and 0 x logit stays finite in the entropy. Renormalises the policy over the tokens it can sample."""
    if not token_ids:
        return logits
    return logits.index_fill(-1, torch.as_tensor(token_ids, device=logits.device), torch.finfo(logits.dtype).min)


def _scaled(logits: torch.Tensor, temperature: float, never_sampled: tuple) -> torch.Tensor:
    scaled = logits.float()
    if temperature != 1.0:
        scaled = scaled / temperature
    return mask_never_sampled(scaled, never_sampled)


class _ChunkedTokenLogProbs(torch.autograd.Function):
    """(N, V) logits, (N,) tokens -> (N,) log-probs and entropies; both differentiable."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, never_sampled, step):
        log_probs = torch.empty(tokens.shape, dtype=torch.float32, device=logits.device)
        entropy = torch.empty_like(log_probs)
        for start in range(0, tokens.numel(), step):
            s = _scaled(logits[start:start + step], temperature, never_sampled)
            log_z = torch.logsumexp(s, dim=-1)
            log_probs[start:start + step] = s.gather(-1, tokens[start:start + step, None]).squeeze(-1) - log_z
            entropy[start:start + step] = log_z - (torch.softmax(s, dim=-1) * s).sum(-1)
        ctx.save_for_backward(logits, tokens)
        ctx.temperature, ctx.never_sampled, ctx.step = temperature, never_sampled, step
        return log_probs, entropy

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy):
        logits, tokens = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, tokens.numel(), ctx.step):
            end = start + ctx.step
            s = _scaled(logits[start:end], ctx.temperature, ctx.never_sampled)
            p = torch.softmax(s, dim=-1)
            g = torch.zeros_like(s)
            if grad_log_probs is not None:  # d log p_t / d s = onehot(t) - p
                g -= p * grad_log_probs[start:end, None]
                g.scatter_add_(-1, tokens[start:end, None], grad_log_probs[start:end, None])
            if grad_entropy is not None:  # d H / d s = -p (s - E_p[s])
                g -= grad_entropy[start:end, None] * p * (s - (p * s).sum(-1, keepdim=True))
            if ctx.never_sampled:
                g.index_fill_(-1, torch.as_tensor(ctx.never_sampled, device=g.device), 0.0)
            grad[start:end] = (g / ctx.temperature).to(grad.dtype)
        return grad, None, None, None, None


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, never_sampled=(),
                    calculate_entropy: bool = False, chunk_bytes: int = CHUNK_BYTES
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of `tokens` (and the entropy) under softmax(logits / temperature) without the tokens in
    `never_sampled`: the one definition of the policy's probabilities, for the actor and the rollouts."""
    shape, vocab = tokens.shape, logits.shape[-1]
    step = max(1, chunk_bytes // (4 * vocab))
    log_probs, entropy = _ChunkedTokenLogProbs.apply(logits.reshape(-1, vocab), tokens.reshape(-1), temperature,
                                                     tuple(never_sampled), step)
    return log_probs.view(shape), (entropy.view(shape) if calculate_entropy else None)
