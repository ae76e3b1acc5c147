"""Text to token-id windows: the normalisation the model was trained with, then the first
``max_length`` tokens (truncate) or overlapping windows over all of them (chunk)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patentclf.corpus.data import to_bigpatent_form

LONG_TEXT_MODES = ("truncate", "chunk")
CHUNK_STRIDE = 64  # tokens shared by neighbouring windows in chunk mode


def chunk_overlap(max_length: int) -> int:
    """Tokens shared by neighbouring windows: ``CHUNK_STRIDE``, at most a quarter of the window
    (a window of 64 tokens or fewer would otherwise never advance)."""
    return min(CHUNK_STRIDE, max_length // 4)


@dataclass
class Windows:
    """Token-id windows of a batch of texts: ``owners[i]`` is the text window ``i`` belongs to."""

    ids: list[list[int]]
    owners: list[int]
    truncated: list[bool]  # per text: longer than the window and only its start was read


def make_windows(tokenizer, texts: Sequence[str], max_length: int, *, normalize: bool, chunk: bool) -> Windows:
    # Lone surrogates (JSON allows "\ud800") are not text the tokenizer can encode: replace them.
    prepared = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]
    prepared = [to_bigpatent_form(t) if normalize else t for t in prepared]
    encoded = tokenizer(prepared, add_special_tokens=True, truncation=False)["input_ids"]
    windows, owners, truncated = [], [], []
    overlap = chunk_overlap(max_length)
    step = max_length - overlap
    for index, ids in enumerate(encoded):
        too_long = len(ids) > max_length
        truncated.append(too_long and not chunk)
        if not too_long or not chunk:
            windows.append(ids[:max_length])
            owners.append(index)
            continue
        for start in range(0, max(1, len(ids) - overlap), step):
            windows.append(ids[start : start + max_length])
            owners.append(index)
    return Windows(windows, owners, truncated)
