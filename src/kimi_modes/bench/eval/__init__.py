"""``kimi-modes eval``: GSM8K-style accuracy, scored by lm-evaluation-harness."""
