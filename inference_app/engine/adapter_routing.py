"""Give every row of a forward pass its LoRA adapter, the cheapest way the batch allows.

peft can mix adapters in one batch (`adapter_names=[...]`, one name per row), but that path
installs forward hooks on every module and splits every LoRA layer's input by adapter at each
call: on a small model it costs a third of a decode step. Most steps do not need it: a lone
client, or a batch whose clients all chose the same model. For those the router switches the
model once (the active adapter, or adapters off for the base model) and the forward pass runs
as plainly as a single-adapter `generate` would; only a batch that really mixes models pays for
`adapter_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# peft's name for "no adapter" in a mixed batch.
BASE_ADAPTER = "__base__"


class AdapterRouter:
    """Owns the adapter state of a peft model (only the scheduler thread calls it)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._enabled = True  # peft loads with adapter layers on
        self._active: str = model.active_adapter

    def forward_kwargs(self, adapters: Sequence[str | None]) -> dict[str, Any]:
        """Switch the model for rows that want `adapters` (None = the base model) and return
        the extra forward arguments that complete the choice."""
        wanted = set(adapters)
        if len(wanted) > 1:
            self._enable(True)
            return {"adapter_names": [name or BASE_ADAPTER for name in adapters]}
        [only] = wanted
        if only is None:
            self._enable(False)
            return {}
        self._enable(True)
        if only != self._active:
            self._model.set_adapter(only, inference_mode=True)
            self._active = only
        return {}

    def _enable(self, enabled: bool) -> None:
        if enabled != self._enabled:
            tuner = self._model.base_model
            if enabled:
                tuner.enable_adapter_layers()
            else:
                tuner.disable_adapter_layers()
            self._enabled = enabled
