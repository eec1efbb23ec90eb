"""The remote reward against a small HTTP server on loopback: scores, retries, bounded concurrency, timeouts."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verlvl.reward.function import RewardFunctionSpec
from verlvl.reward.scoring import RewardScorer, Sample


class JudgeState:
    def __init__(self):
        self.lock = threading.Lock()
        self.active = self.max_active = self.requests = 0
        self.failed_once: set[str] = set()


def make_server(state: JudgeState) -> ThreadingHTTPServer:
    class Judge(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests += 1
                state.active += 1
                state.max_active = max(state.max_active, state.active)
                first_time = body["solution_str"] not in state.failed_once
                state.failed_once.add(body["solution_str"])
            try:
                if body["solution_str"].startswith("flaky") and first_time:
                    self.send_response(503)  # fails once, then answers: must be retried
                    self.end_headers()
                    return
                time.sleep(3.0 if body["solution_str"] == "slow" else 0.05)
                right = body["solution_str"].endswith(str(body["ground_truth"]))
                answer = json.dumps({"score": float(right), "judged": 1.0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            finally:
                with state.lock:
                    state.active -= 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def judge():
    state = JudgeState()
    server = make_server(state)
    yield f"http://127.0.0.1:{server.server_address[1]}/score", state
    server.shutdown()


def test_remote_reward_scores_retries_and_bounds_concurrency(judge):
    url, state = judge
    spec = RewardFunctionSpec(module="verlvl.reward.remote", name="compute_score",
                              reward_kwargs={"url": url, "retries": 2, "backoff_s": 0.05})
    scorer = RewardScorer(spec, max_concurrency=3, timeout_s=10)
    samples = [Sample("judge", f"answer {i % 2}", "1") for i in range(12)] + [Sample("judge", "flaky 1", "1")]
    outcomes = scorer.score(samples)
    assert [o.score for o in outcomes] == [float(i % 2) for i in range(12)] + [1.0]
    assert all(o.status == "ok" and o.extras == {"judged": 1.0} for o in outcomes)
    assert state.max_active <= 3  # bounded
    assert state.requests == 14  # the flaky one was retried once


def test_remote_reward_timeout_and_dead_server_cost_only_their_samples(judge):
    url, _ = judge
    spec = RewardFunctionSpec(module="verlvl.reward.remote", name="compute_score",
                              reward_kwargs={"url": url, "retries": 0})
    outcomes = RewardScorer(spec, timeout_s=1.0).score([Sample("judge", "slow", "1"), Sample("judge", "x 1", "1")])
    assert [o.status for o in outcomes] == ["timeout", "ok"]
    dead = RewardFunctionSpec(module="verlvl.reward.remote", name="compute_score",
                              reward_kwargs={"url": "http://127.0.0.1:9/none", "retries": 1, "backoff_s": 0.01})
    outcome = RewardScorer(dead, error_score=-1.0).score([Sample("judge", "x", "1")])[0]
    assert outcome.status == "error" and outcome.score == -1.0 and "failed after 2 attempt(s)" in outcome.error
