"""Turn one sequence's token ids into text deltas, honouring stop strings.

Tokens do not map to characters one to one: a multi-byte character can span several byte-level
tokens and a sentencepiece word marker only becomes a space next to its neighbour. Decoding each
token alone would emit broken characters, so the fast tokenizer's `DecodeStream` (seeded with the
end of the prompt) decides when text is complete. Text that could be the start of a stop string
is held back until it is known not to be one, so a stop string never reaches the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers.decoders import DecodeStream

# Enough prompt context for the decoder to place leading spaces and merges like the full decode.
_PROMPT_CONTEXT_TOKENS = 8


class _FullDecoder:
    """Fallback for slow tokenizers: decode all generated ids and return what is new."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = 0

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        text: str = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
            return ""
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta


class _StreamDecoder:
    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int]) -> None:
        self._backend = tokenizer.backend_tokenizer
        self._stream = DecodeStream(
            ids=list(prompt_ids[-_PROMPT_CONTEXT_TOKENS:]), skip_special_tokens=True
        )

    def step(self, token_id: int) -> str:
        return self._stream.step(self._backend, token_id) or ""


class StopStringFilter:
    """Pass text through until a stop string appears; hold back a possible partial match."""

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._held = ""
        self.stopped = False

    def push(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self._stop:
            return delta
        text = self._held + delta
        hits = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[: min(hits)]
        keep = self._partial_match_length(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_match_length(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class TextStream:
    """Incremental text of one completion: `push` a token id, get the new visible text."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int], stop: Sequence[str]) -> None:
        self._decoder: _StreamDecoder | _FullDecoder = (
            _StreamDecoder(tokenizer, prompt_ids)
            if getattr(tokenizer, "is_fast", False)
            else _FullDecoder(tokenizer)
        )
        self._filter = StopStringFilter(stop)

    @property
    def stopped(self) -> bool:
        """True once a stop string was generated; the text before it has been returned."""
        return self._filter.stopped

    def push(self, token_id: int) -> str:
        return self._filter.push(self._decoder.step(token_id))

    def flush(self) -> str:
        """Text held back as a possible stop-string prefix, released at the end of generation."""
        return self._filter.flush()
