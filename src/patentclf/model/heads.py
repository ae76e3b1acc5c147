"""The model's output heads: one linear ``score`` layer whose outputs are read as several heads.

A section-only model has nine outputs (the main section). A hierarchy model's ``score`` layer has
``9 + 9 + C + S`` outputs, read as four heads trained together:

* ``section``: the main section (softmax over nine; the same head as a section-only model);
* ``sections``: every section the patent belongs to (nine independent sigmoids, multi-label);
* ``class``: the main CPC class (softmax over the ``C`` classes seen in training);
* ``subclass``: the main CPC subclass (softmax over the ``S`` subclasses seen in training).

Keeping them in one layer keeps the bundle format (PEFT saves ``score`` with the adapter) and lets
every head read the same last-token state. The layout is recorded in ``patentclf.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from patentclf.corpus.hierarchy import targets
from patentclf.corpus.labels import CODES, NUM_LABELS
from patentclf.model.train_config import LossWeights  # declared with the training settings (light: the CLI reads them)

if TYPE_CHECKING:
    from patentclf.model.bundle import BundleInfo

IGNORE = -100  # a target that is unknown for this row (no codes, or a code outside the vocabulary)


@dataclass
class HeadLayout:
    classes: list[str] = field(default_factory=list)
    subclasses: list[str] = field(default_factory=list)

    @property
    def hierarchical(self) -> bool:
        return bool(self.classes or self.subclasses)

    @property
    def size(self) -> int:
        return 2 * NUM_LABELS + len(self.classes) + len(self.subclasses) if self.hierarchical else NUM_LABELS

    def slices(self) -> dict[str, slice]:
        if not self.hierarchical:
            return {"section": slice(0, NUM_LABELS)}
        start_class = 2 * NUM_LABELS
        start_subclass = start_class + len(self.classes)
        return {
            "section": slice(0, NUM_LABELS),
            "sections": slice(NUM_LABELS, 2 * NUM_LABELS),
            "class": slice(start_class, start_subclass),
            "subclass": slice(start_subclass, self.size),
        }

    def to_dict(self) -> dict:
        return {"classes": self.classes, "subclasses": self.subclasses}

    def output_names(self) -> list[str]:
        """A name for each output of the ``score`` layer, in order: ``A``..``Y`` (main section), then
        ``sections:A``.., ``class:A01``.., ``subclass:A01B``.. (for a merged export's id2label)."""
        names = list(CODES)
        if self.hierarchical:
            names += (
                [f"sections:{c}" for c in CODES]
                + [f"class:{c}" for c in self.classes]
                + [f"subclass:{c}" for c in self.subclasses]
            )
        return names

    @classmethod
    def from_info(cls, info: BundleInfo) -> "HeadLayout":
        """The heads a bundle was trained with (none recorded: the main section only)."""
        if info.heads is None:
            return cls()
        return cls(classes=list(info.heads.classes), subclasses=list(info.heads.subclasses))

    @classmethod
    def from_codes(cls, codes: list[list[str]], min_count: int = 1) -> "HeadLayout":
        """The vocabulary of main classes and subclasses in the training rows (none: section-only)."""
        found = [t for t in map(targets, codes) if t is not None]
        classes = Counter(t.main_class for t in found if t.main_class)
        subclasses = Counter(t.main_subclass for t in found if t.main_subclass)
        return cls(
            classes=sorted(c for c, n in classes.items() if n >= min_count),
            subclasses=sorted(c for c, n in subclasses.items() if n >= min_count),
        )


def encode_targets(layout: HeadLayout, codes: list[list[str]]) -> dict[str, list]:
    """Per-row training targets of the extra heads: ``section_targets`` (nine 0/1 values, or -1 where
    the row has no codes), ``class_labels`` and ``subclass_labels`` (an index, or ``IGNORE``)."""
    class_index = {c: i for i, c in enumerate(layout.classes)}
    subclass_index = {c: i for i, c in enumerate(layout.subclasses)}
    section_targets, class_labels, subclass_labels = [], [], []
    for row in codes:
        found = targets(row)
        if found is None:
            section_targets.append([-1.0] * NUM_LABELS)
            class_labels.append(IGNORE)
            subclass_labels.append(IGNORE)
            continue
        section_targets.append([1.0 if code in found.sections else 0.0 for code in CODES])
        class_labels.append(class_index.get(found.main_class, IGNORE))
        subclass_labels.append(subclass_index.get(found.main_subclass, IGNORE))
    return {"section_targets": section_targets, "class_labels": class_labels, "subclass_labels": subclass_labels}


TARGET_KEYS = ("section_targets", "class_labels", "subclass_labels")


def head_loss(
    logits: torch.Tensor, labels: torch.Tensor, extra: dict[str, torch.Tensor], layout: HeadLayout, weights: LossWeights
) -> torch.Tensor:
    """The summed loss of every head present; rows with unknown targets are left out of that head."""
    parts = layout.slices()
    logits = logits.float()
    loss = F.cross_entropy(logits[:, parts["section"]], labels, label_smoothing=weights.label_smoothing)
    if not layout.hierarchical or not extra:
        return loss
    targets_ = extra["section_targets"].float()
    known = targets_[:, 0] >= 0
    if known.any():
        loss = loss + weights.sections * F.binary_cross_entropy_with_logits(logits[known][:, parts["sections"]], targets_[known])
    for key, part, weight in (("class_labels", "class", weights.classes), ("subclass_labels", "subclass", weights.subclasses)):
        target = extra[key].long()
        if (target != IGNORE).any():
            loss = loss + weight * F.cross_entropy(
                logits[:, parts[part]], target, ignore_index=IGNORE, label_smoothing=weights.label_smoothing
            )
    return loss


def last_token_positions(lengths: torch.Tensor) -> torch.Tensor:
    """Where a row is read: its last real token, ``length - 1`` (rows are right-padded).

    This is the one rule for training and prediction. It counts tokens, not non-pad ids, so a
    tokenizer that appends EOS (which is often also the pad token) is read at that EOS in both.
    """
    return (lengths - 1).clamp(min=0)
