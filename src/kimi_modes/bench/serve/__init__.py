"""``kimi-modes bench serve``: vLLM's serving benchmark (throughput, TTFT, TPOT, goodput)."""
