"""What a prediction is: the section, its confidence, the section set and the CPC codes below it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class CodeSuggestion:
    """A CPC class (``G06``) or subclass (``G06F``) suggestion with its English title."""

    code: str
    title: str
    probability: float


@dataclass
class Prediction:
    label: str  # the main section: the one the patent's first code is in
    label_id: int
    name: str
    confidence: float
    probabilities: dict[str, float]
    truncated: bool  # the text was longer than the window and only its start was read
    chunks: int = 1  # windows read (chunk mode)
    # Every section the patent is predicted to belong to (multi-label; always holds ``label``), with
    # each one's own probability. A bundle trained on section labels only answers ``[label]``.
    sections: list[str] = field(default_factory=list)
    section_probabilities: dict[str, float] = field(default_factory=dict)
    # The top 5 main CPC classes and subclasses, best first (empty for a section-only bundle).
    classes: list[CodeSuggestion] = field(default_factory=list)
    subclasses: list[CodeSuggestion] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
