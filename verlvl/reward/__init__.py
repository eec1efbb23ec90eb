"""Rewards: user reward files (veRL's signature), built-in scorers, managers, safe parallel scoring."""
