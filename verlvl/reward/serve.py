"""An HTTP reward server for builtin://remote: the built-in scorers (by data_source) behind POST /get_reward."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ProcessPoolExecutor

from aiohttp import web

from verlvl.reward.scorers import default_compute_score

FIELDS = ("data_source", "solution_str", "ground_truth")


def make_app(workers: int = 2, path: str = "/get_reward") -> web.Application:
    """POST {data_source, solution_str, ground_truth, extra_info} -> the scorer's dict ({score, ...}).
    Scoring runs in a process pool, so a slow math-verify call does not hold up other requests."""
    app = web.Application()
    pool = ProcessPoolExecutor(max_workers=workers)

    async def get_reward(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        missing = [k for k in FIELDS if k not in body]
        if missing:
            return web.json_response({"error": f"missing field(s) {missing}; send {list(FIELDS)} and extra_info"},
                                     status=400)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(pool, default_compute_score, body["data_source"],
                                                body["solution_str"], body["ground_truth"], body.get("extra_info"))
        except NotImplementedError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(result if isinstance(result, dict) else {"score": float(result)})

    async def close_pool(_app):
        pool.shutdown(cancel_futures=True)

    app.router.add_post(path, get_reward)
    app.on_cleanup.append(close_pool)
    return app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--path", default="/get_reward", help="the URL path to answer on")
    parser.add_argument("--workers", type=int, default=2, help="scoring processes")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.workers, args.path), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
