"""The running batch's KV cache: rows of different lengths, left-padded to one width.

Left padding keeps every row's newest token in the last column, so one decode step appends one
column for all rows and the model's usual 2-D attention mask hides the padding. Rows join (after
their prefill) by padding both sides to a common width, and leave by row selection; columns that
have become padding in every row are trimmed so a finished long request stops costing memory.

Each layer's keys and values live in a buffer with spare columns: a decode step writes its column
in place, where transformers' DynamicLayer would copy the whole cache (torch.cat) every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Spare columns added when a buffer is full: at least this many, or half the current length.
_MIN_GROWTH = 64


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose `keys`/`values` are views of buffers that grow geometrically."""

    def __init__(self) -> None:
        super().__init__()
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            capacity = end + max(_MIN_GROWTH, end // 2)
            self._key_buffer = self._grown(self._key_buffer, key_states, capacity)
            self._value_buffer = self._grown(self._value_buffer, value_states, capacity)
        assert self._value_buffer is not None  # grown together with the key buffer
        self._key_buffer[:, :, self._length : end] = key_states
        self._value_buffer[:, :, self._length : end] = value_states
        self._length = end
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def _grown(
        self, buffer: torch.Tensor | None, like: torch.Tensor, capacity: int
    ) -> torch.Tensor:
        shape = (*like.shape[:2], capacity, *like.shape[3:])
        grown = like.new_empty(shape)
        if buffer is not None:
            grown[:, :, : self._length] = buffer[:, :, : self._length]
        return grown


def new_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> DynamicCache:
    """A cache of GrowingLayers, optionally filled with ([rows, heads, width, dim] k, v) pairs."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for layer in cache.layers:
        if type(layer) is not GrowingLayer or layer.keys is None or layer.values is None:
            raise TypeError(
                f"model: its {type(layer).__name__} cache layers cannot be batched; "
                "only full-attention models are supported"
            )
        pairs.append((layer.keys, layer.values))
    return pairs


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class PaddedBatch:
    """A DynamicCache ([rows, heads, width, head_dim] per layer) with its [rows, width] mask."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        self.cache = cache
        self.mask = mask

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    def mask_with_new_column(self) -> torch.Tensor:
        """The mask for a decode step: every row gains one real token."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        return self.mask

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (in that order), dropping columns that are padding in all of them."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        real_columns = mask.any(dim=0).nonzero()
        start = int(real_columns[0].item()) if real_columns.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        self.cache = new_cache(
            [
                (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                for k, v in _layers(self.cache)
            ]
        )

    def extend(self, other: PaddedBatch) -> None:
        """Append `other`'s rows below this batch's rows."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(other.mask, width, 1)])
        self.cache = new_cache(
            [
                (
                    torch.cat([_pad_left(k, width, 2), _pad_left(ok, width, 2)]),
                    torch.cat([_pad_left(v, width, 2), _pad_left(ov, width, 2)]),
                )
                for (k, v), (ok, ov) in zip(_layers(self.cache), _layers(other.cache), strict=True)
            ]
        )
