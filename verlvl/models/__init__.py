"""Model-family specifics: Qwen-VL processors and position ids, and the tiny offline model builder."""
