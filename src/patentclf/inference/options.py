"""What one request may ask of an answer: how many codes per level, a probability floor, the sections
threshold, and how deep to answer. ``PredictOptions()`` is today's answer, field for field.

One frozen pydantic model, validated once and used by every surface: ``Classifier.predict(texts,
options=...)``, the API's request bodies (the model is embedded in their schema, so the OpenAPI
document describes every field and a bad value is a 422 naming it), the CLI's flags (built before the
model loads, so a bad value is a one-line error), the Ray bulk job and the web UI.

* ``classes``, ``subclasses``, ``groups``, ``similar``: suggestions per level, best first; 0 switches
  the level off (no list, no entry in ``levels``). At most ``MAX_SUGGESTIONS`` (50): past a few dozen
  the codes' probabilities are ~0 (the groups are drawn from the 10 best subclasses anyway), while
  each one more adds titles to the answer and, for ``similar``, neighbours to the index search, which
  a request shares a model call with others for; a bound keeps every request's answer small and cheap.
* ``threshold``: classes, subclasses and groups below this probability are left out (the section
  is always answered; similar patents have similarities, not probabilities, and are not filtered).
* ``sections_threshold``: the probability a section needs to join ``sections`` (the multi-label
  set), instead of the threshold the bundle's sections stack was fitted with.
* ``depth``: the deepest level answered. ``section`` answers the section, its probabilities and the
  section set only: no index search, no votes, no class or subclass lists (so ``similar`` is empty
  and ``evidence_disagrees`` false). ``class`` and ``subclass`` still search the index where it has
  one: the neighbours' votes are part of the class and subclass probabilities.
* ``explain``: which sentences raised or lowered the main section's, the best subclass's and the best
  group's probability (``explain.py``: the answer again with each sentence left out, so an explained
  text costs about one more text of model work per sentence).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_SUGGESTIONS = 50
DEFAULT_SUGGESTIONS = 5
DEPTHS = ("section", "class", "subclass", "group")
Depth = Literal["section", "class", "subclass", "group"]


def _whole(value: object) -> object:
    """A float with no fractional part (5.0, 1e1: JSON's integers too) as the int it is; anything else
    as it came (strings and booleans are then refused: a count is a JSON number)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_whole)]


def _count(level: str) -> Any:
    return Field(
        DEFAULT_SUGGESTIONS,
        ge=0,
        le=MAX_SUGGESTIONS,
        strict=True,
        description=f"{level} to return, best first (0: none; at most {MAX_SUGGESTIONS})",
    )


def _probability(default: float | None, description: str) -> Any:
    return Field(default, ge=0, le=1, strict=True, allow_inf_nan=False, description=description)


class PredictOptions(BaseModel):
    """How an answer is shaped (see the module's docstring); the defaults give today's answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: Count = _count("main CPC classes")
    subclasses: Count = _count("main CPC subclasses")
    groups: Count = _count("main groups (with a patent index)")
    similar: Count = _count("nearest indexed patents (with a patent index; at every depth but section)")
    threshold: float = _probability(
        0.0, "classes, subclasses and groups less probable than this are left out (the section is always answered)"
    )
    sections_threshold: float | None = _probability(
        None,
        "a section joins 'sections' (the multi-label set) from this probability; null: the model's own threshold",
    )
    depth: Depth = Field(
        "group",
        description="the deepest level answered: section (no index search, no class or subclass), class, subclass or "
        "group (everything)",
    )

    explain: bool = Field(
        False,
        strict=True,
        description="say which sentences raised or lowered the section's, best subclass's and best group's probability "
        "(the 'explanation' field; costs about one prediction per sentence, at most 40 sentences)",
    )

    def reaches(self, level: str) -> bool:
        """Whether ``level`` (section, class, subclass, group) is answered at this depth."""
        return DEPTHS.index(level) <= DEPTHS.index(self.depth)

    def count(self, level: str) -> int:
        """Codes to return at ``level`` (0 beyond the depth)."""
        return (
            getattr(self, {"class": "classes", "subclass": "subclasses", "group": "groups"}[level]) if self.reaches(level) else 0
        )

    @property
    def searches(self) -> bool:
        """Whether the answer needs the patent index: every depth but ``section``."""
        return self.depth != "section"


DEFAULT_OPTIONS = PredictOptions()
