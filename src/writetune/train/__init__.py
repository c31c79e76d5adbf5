"""Training: multi-task instruction tuning of LLaMA-family causal LMs on a `writetune data build` mix."""
