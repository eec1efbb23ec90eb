"""A reward served over HTTP (an LLM judge or a reward server): POST one sample, read back its score.

Select it by name: custom_reward_function.path=builtin://remote custom_reward_function.reward_kwargs.url=URL
(reward_kwargs may also set request_timeout_s, retries, backoff_s, headers). `python -m verlvl.reward.serve`
serves the built-in scorers this way. It is async, so the scorer runs up to max_concurrency requests at once,
each with a timeout.
"""

from __future__ import annotations

import asyncio

import aiohttp

RETRY_STATUS = {429, 500, 502, 503, 504}


async def compute_score(data_source, solution_str, ground_truth, extra_info=None, *, url: str,
                        request_timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 0.5,
                        headers: dict | None = None):
    """POST {data_source, solution_str, ground_truth, extra_info} as JSON to `url`. The server answers a
    number or a JSON object with 'score' (other keys are logged). Connection errors and 429/5xx
    answers are retried `retries` times with exponential backoff."""
    payload = {"data_source": data_source, "solution_str": solution_str, "ground_truth": ground_truth,
               "extra_info": extra_info}
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(url, json=payload, headers=headers) as response:
                    if response.status == 200:
                        return await response.json(content_type=None)
                    last_error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    if response.status not in RETRY_STATUS:
                        break
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            last_error = f"{type(e).__name__}: {e}"
        if attempt < retries:
            await asyncio.sleep(backoff_s * 2**attempt)
    raise RuntimeError(f"reward server {url} failed after {retries + 1} attempt(s): {last_error}")
