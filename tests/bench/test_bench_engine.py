"""tests/bench/bench_engine.py under pytest: prints its tables, asserts only that the results are sane."""

from tests.bench.bench_engine import (bench_loading, bench_log_probs, bench_padding, print_loading,
                                      print_log_probs, print_padding)


def test_loading_memory_on_two_ranks(tmp_path):
    rows = bench_loading(tmp_path)
    print_loading(rows)
    for row in rows:  # every rank ends with half the parameters, whichever way it loaded
        assert all(r["local_param_bytes"] * 2 >= row["model_bytes"] * 0.99 for r in row["ranks"])


def test_log_prob_maths_memory_at_qwen_vocabulary():
    rows = bench_log_probs()
    print_log_probs(rows)
    assert all(row["max_diff"] < 1e-4 for row in rows)


def test_tokens_computed_per_real_token():
    result = bench_padding()
    print_padding(result)
    assert all(r["ratio"] >= 1.0 for r in result[0])
