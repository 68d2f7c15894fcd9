"""Pick the next token for every row of a batch, each row with its own sampling settings.

Each request carries its own random generator, so a seeded request draws the same numbers whether
it runs alone or next to others. Rows are independent: the batched operations here (argmax,
softmax, sort) never mix rows, which is what keeps a request's output independent of its
neighbours.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from inference_app.engine.base import SamplingParams


class RowSampler:
    """Sampling state of one sequence: its settings, its generator and its token counts."""

    def __init__(self, params: SamplingParams, vocab_size: int, device: torch.device) -> None:
        self.params = params
        self.greedy = params.temperature == 0.0
        self._generator: torch.Generator | None = None
        if not self.greedy:
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            self._generator = torch.Generator(device=device).manual_seed(seed)
        self.penalised = params.presence_penalty != 0.0 or params.frequency_penalty != 0.0
        # Only generated tokens count towards the penalties, as in the OpenAI API.
        self._counts = (
            torch.zeros(vocab_size, dtype=torch.float32, device=device) if self.penalised else None
        )

    def record(self, token_id: int) -> None:
        if self._counts is not None:
            self._counts[token_id] += 1.0

    def apply_penalties(self, logits: torch.Tensor) -> torch.Tensor:
        if self._counts is None:
            return logits
        present = (self._counts > 0).to(logits.dtype)
        return (
            logits
            - self.params.frequency_penalty * self._counts
            - self.params.presence_penalty * present
        )

    def draw(self, probs: torch.Tensor) -> int:
        return int(torch.multinomial(probs, 1, generator=self._generator).item())


def _top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero out the tail of each row beyond its nucleus (always keeping the top token)."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p.unsqueeze(-1), 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def next_tokens(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> list[int]:
    """One token per row of `logits` ([batch, vocab]) following each row's sampler.

    This runs once per decode step, so it skips what changes nothing: the argmax when every row
    samples, the division by a temperature of 1, the nucleus sort when every top_p is 1."""
    logits = logits.float()
    penalised = [i for i, s in enumerate(samplers) if s.penalised]
    if penalised:
        logits = logits.clone()
        for i in penalised:
            logits[i] = samplers[i].apply_penalties(logits[i])
    sampled = [i for i, s in enumerate(samplers) if not s.greedy]
    chosen = [0] * len(samplers) if len(sampled) == len(samplers) else logits.argmax(-1).tolist()
    if sampled:
        every_row = len(sampled) == len(samplers)
        rows = logits if every_row else logits[torch.tensor(sampled, device=logits.device)]
        temperatures = [samplers[i].params.temperature for i in sampled]
        if any(t != 1.0 for t in temperatures):
            rows = rows / torch.tensor(temperatures, device=logits.device).unsqueeze(-1)
        probs = torch.softmax(rows, dim=-1)
        top_ps = [samplers[i].params.top_p for i in sampled]
        if any(p < 1.0 for p in top_ps):
            probs = _top_p_filter(probs, torch.tensor(top_ps, device=logits.device))
        for row, i in enumerate(sampled):
            chosen[i] = samplers[i].draw(probs[row])
    for sampler, token in zip(samplers, chosen, strict=True):
        sampler.record(token)
    return [int(t) for t in chosen]
