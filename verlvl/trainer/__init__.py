"""The driver side: the RL loop, core algorithms, metrics."""
