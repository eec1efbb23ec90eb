"""The seed tutorial's reward as a file for custom_reward_function.path: the last \\boxed{} answer
compared with math-verify; 1 right, 0 wrong, -1 when there is no boxed answer."""

from verlvl.reward.scorers.boxed_math import compute_score as _boxed


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return _boxed(data_source, solution_str, ground_truth, extra_info)
