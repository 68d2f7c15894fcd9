"""aca-infer: serve a fine-tuned LLM as an authenticated, autoscaling endpoint."""

__version__ = "0.1.0"
