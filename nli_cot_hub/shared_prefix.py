"""Prompts that start alike (the chat template and system prompt): their shared tokens are computed once and
the keys and values reused by every batch, so a batch computes only each row's own tokens.

A row is laid out as ``shared prefix | padding | own tokens``: the padding sits between the prefix and the
row's own tokens, the attention mask hides it, and positions count real tokens only, as with left padding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``sequences`` share, leaving each at least one token of its own."""
    if not sequences:
        return 0
    first = sequences[0]
    limit = min(len(sequence) for sequence in sequences) - 1
    length = 0
    while length < limit and all(sequence[length] == first[length] for sequence in sequences):
        length += 1
    return length


def cache_keyword() -> str:
    """The name models take their key/value cache under: transformers 5.25 renamed ``past_key_values`` to
    ``cache`` (the old name still works there, with a warning)."""
    import transformers
    from packaging.version import Version

    return "cache" if Version(transformers.__version__) >= Version("5.25") else "past_key_values"


def prefix_cache(model, prefix: Sequence[int], device: str):
    """The key/value cache of ``prefix`` for one row."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True, **{cache_keyword(): cache})
    return cache


def cache_for_rows(cache, rows: int):
    """A copy of a one-row prefix cache for ``rows`` rows (the model appends to it, so each batch gets its own)."""
    rows_cache = copy.deepcopy(cache)
    rows_cache.batch_repeat_interleave(rows)
    return rows_cache


def pad_after_prefix(sequences: Sequence[Sequence[int]], shared: int, pad_id: int, multiple: int | None = None):
    """Token ids, attention mask and positions of ``sequences`` laid out as ``prefix | padding | own tokens``
    (plain left padding when ``shared`` is 0); the width is rounded up to a multiple of ``multiple``."""
    import torch

    width = max(len(sequence) for sequence in sequences)
    if multiple:
        width = -(-width // multiple) * multiple
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        own = sequence[shared:]
        ids[row, :shared] = torch.tensor(sequence[:shared], dtype=torch.long)
        mask[row, :shared] = 1
        ids[row, width - len(own) :] = torch.tensor(own, dtype=torch.long)
        mask[row, width - len(own) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids, mask, positions


class SharedPrefix:
    """The tokens all ``sequences`` of a run start with, their cache computed once (none when not ``enabled``).

    With ``static_new_tokens`` set, each batch gets a static cache (preallocated for the batch's width plus that
    many new tokens) holding the prefix: one cache is kept and refilled while the batches fit it, so no batch
    allocates one, and a compiled decode step would see the same tensors every batch.
    """

    def __init__(
        self,
        model,
        sequences: Sequence[Sequence[int]],
        device: str,
        enabled: bool = True,
        static_new_tokens: int | None = None,
    ):
        self.config = model.config
        self.static_new_tokens = static_new_tokens
        self.length = shared_prefix_length(sequences) if enabled else 0
        self.cache = prefix_cache(model, sequences[0][: self.length], device) if self.length else None
        self._static = None
        self._static_shape = (0, 0)

    def batch(self, sequences: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None, copies: int = 1):
        """Ids, mask and positions of a batch (:func:`pad_after_prefix`) and the keyword arguments that give the
        model the prefix's cache, one row for each of ``copies`` samples per sequence ({} without a prefix and
        without a static cache)."""
        ids, mask, positions = pad_after_prefix(sequences, self.length, pad_id, multiple)
        rows = len(sequences) * copies
        if self.static_new_tokens is not None:
            return ids, mask, positions, {cache_keyword(): self.static_cache(rows, ids.shape[1])}
        if self.cache is None:
            return ids, mask, positions, {}
        return ids, mask, positions, {cache_keyword(): cache_for_rows(self.cache, rows)}

    def static_cache(self, rows: int, width: int):
        """A static cache for ``rows`` rows of up to ``width`` prompt tokens, holding the prefix's keys and values."""
        from transformers import StaticCache

        length = width + self.static_new_tokens
        kept_rows, kept_length = self._static_shape
        if self._static is None or rows != kept_rows or length > kept_length:
            self._static = None  # this object's reference dropped before the new cache is allocated
            self._static = StaticCache(config=self.config, max_cache_len=length)
            self._static_shape = (rows, length)
        else:
            self._static.reset()
        if self.cache is not None:
            for index, layer in enumerate(self.cache.layers):
                shape = (rows, -1, -1, -1)
                self._static.update(layer.keys.expand(shape), layer.values.expand(shape), index)
        return self._static
