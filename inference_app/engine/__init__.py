"""Token producers behind the `Engine` interface (see `base.py`)."""

from inference_app.engine.transformers_engine import TransformersEngine

__all__ = ["TransformersEngine"]
