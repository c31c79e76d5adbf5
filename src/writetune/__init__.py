"""writetune: multi-task instruction tuning of LLaMA-family models into writing assistants, with the metrics writing
research reports."""

__version__ = "0.1.0"
