"""Which sentences of a text made its answer: occlusion, the answer again with each sentence left out.

For the main section, the best subclass and the best main group of an answer (the levels it has: a
level switched off or emptied by the threshold has no explanation), each sentence's *effect* is the
code's probability with the whole text minus its probability with that sentence left out: positive,
the sentence raised it; negative, it lowered it. The probabilities are the final ones the user sees
(calibration, the hierarchy, the neighbours' votes and the groups run on every variant), and only the
engine's outputs are needed, so the torch and the vLLM engines explain alike.

The work is in the caller's hands: :func:`expand` turns texts into the texts to classify (each text,
then its variants), :meth:`Expansion.collect` turns their predictions back into one per text, with the
explanation attached. ``Classifier.predict`` runs the expansion in one call (the variants batched with
the texts); the service feeds it through its fair queue, so an explained request takes its turns
with the others, a model call at a time.

Sentences: split after ``.``, ``!`` or ``?`` followed by white space, and at line breaks (a title's
line is a sentence). Spans are character offsets into the text as sent (``text[start:end]``, white
space around a sentence left out), so a client can highlight them. At most ``MAX_SENTENCES`` are
explained: the first ones (the model reads a text from its start, and with ``long_text=truncate`` only
its first ``max_length`` tokens), and ``capped`` says when there were more. A text of one sentence has
nothing to leave out: its explanation has the sentence and no codes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from patentclf.inference.options import MAX_SUGGESTIONS, PredictOptions

# Sentences explained per text: each costs one more text of model work (the first ones are kept).
MAX_SENTENCES = 40
EXPLAINED_LEVELS = ("section", "subclass", "group")
METHOD = "occlusion"
# A sentence ends after . ! ? and white space, or at a line break.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


@dataclass
class SentenceSpan:
    """A sentence of the text: ``text[start:end]``."""

    start: Annotated[int, Field(ge=0, description="offset of its first character in the text as sent")]
    end: Annotated[int, Field(ge=0, description="offset just past its last character")]


@dataclass
class CodeExplanation:
    """What each sentence did to one code's probability."""

    level: Annotated[str, Field(description="section, subclass or group", examples=["subclass"])]
    code: Annotated[str, Field(examples=["G01G"])]
    probability: Annotated[float, Field(ge=0, le=1, description="its probability with the whole text")]
    effects: Annotated[
        list[float],
        Field(
            description="per sentence (in the order of sentences), the probability with the whole text minus the "
            "probability with that sentence left out: positive, the sentence raised it; negative, it lowered it"
        ),
    ]


@dataclass
class Explanation:
    """Which sentences raised or lowered the answer's best codes, and by how much."""

    method: Annotated[str, Field(description="occlusion: the answer again with each sentence left out")] = METHOD
    sentences: Annotated[list[SentenceSpan], Field(description="the sentences explained, in the text's order")] = field(
        default_factory=list
    )
    sentence_count: Annotated[int, Field(ge=0, description="sentences in the text (more than explained when capped)")] = 0
    capped: Annotated[bool, Field(description=f"the text had more than {MAX_SENTENCES} sentences: only the first are")] = False
    codes: Annotated[
        list[CodeExplanation],
        Field(description="the main section, the best subclass and the best main group, as far as the answer has them"),
    ] = field(default_factory=list)


def sentence_spans(text: str) -> list[SentenceSpan]:
    """Every sentence of ``text``, in order (white space around them left out)."""
    spans, start = [], 0
    for boundary in [*_BOUNDARY.finditer(text), None]:
        stop = boundary.start() if boundary else len(text)
        piece = text[start:stop]
        if piece.strip():
            left = len(piece) - len(piece.lstrip())
            spans.append(SentenceSpan(start + left, start + len(piece.rstrip())))
        if boundary:
            start = boundary.end()
    return spans


def without(text: str, span: SentenceSpan) -> str:
    """``text`` with the sentence at ``span`` left out (and the white space after it)."""
    rest = text[span.end :]
    return text[: span.start] + rest[len(rest) - len(rest.lstrip()) :]


def probe_options(options: PredictOptions) -> PredictOptions:
    """The options a variant is answered with: the request's depth, no threshold, and as many subclasses
    and groups as there may be, so the explained codes are found in the variant's answer (a code past
    the 50 best reads 0)."""
    return options.model_copy(
        update=dict(explain=False, threshold=0.0, classes=0, subclasses=MAX_SUGGESTIONS, groups=MAX_SUGGESTIONS)
    )


@dataclass
class _Plan:
    """One text of an expansion: where its own answer and its variants' answers are."""

    row: int
    spans: list[SentenceSpan] | None = None  # None: not explained
    count: int = 0


@dataclass
class Expansion:
    """The texts to classify for ``texts`` (each text, then its variants), the options of each, and how
    to put their predictions back together (:meth:`collect`)."""

    texts: list[str]
    options: list[PredictOptions]
    plans: list[_Plan]

    @property
    def explained(self) -> bool:
        return len(self.texts) > len(self.plans)

    def collect(self, predictions: Sequence) -> list:
        """One prediction per text (``predictions`` are of ``self.texts``, in order), explained where asked."""
        if len(predictions) != len(self.texts):
            raise ValueError(f"{len(predictions)} predictions for {len(self.texts)} texts")
        answers = []
        for plan in self.plans:
            answer = predictions[plan.row]
            if plan.spans is not None:
                variants = predictions[plan.row + 1 : plan.row + 1 + len(plan.spans) * (len(plan.spans) > 1)]
                answer = dataclasses.replace(answer, explanation=explain(answer, variants, plan.spans, plan.count))
            answers.append(answer)
        return answers


def expand(texts: Sequence[str], options: Sequence[PredictOptions]) -> Expansion:
    """The expansion of ``texts``, each with its own ``options``: a text whose options ask to explain is
    followed by one variant per explained sentence (none for a text of one sentence)."""
    out_texts: list[str] = []
    out_options: list[PredictOptions] = []
    plans = []
    for text, chosen in zip(texts, options, strict=True):
        plan = _Plan(len(out_texts))
        out_texts.append(text)
        out_options.append(chosen.model_copy(update=dict(explain=False)) if chosen.explain else chosen)
        if chosen.explain:
            spans = sentence_spans(text)
            plan.spans, plan.count = spans[:MAX_SENTENCES], len(spans)
            if len(plan.spans) > 1:
                probe = probe_options(chosen)
                out_texts += [without(text, span) for span in plan.spans]
                out_options += [probe] * len(plan.spans)
        plans.append(plan)
    return Expansion(out_texts, out_options, plans)


def code_probability(prediction, level: str, code: str) -> float:
    """``code``'s probability in ``prediction`` (0 where it is not among the answer's codes)."""
    if level == "section":
        return prediction.probabilities.get(code, 0.0)
    found = prediction.subclasses if level == "subclass" else prediction.groups
    return next((s.probability for s in found if s.code == code), 0.0)


def explain(answer, variants: Sequence, spans: list[SentenceSpan], count: int) -> Explanation:
    """The explanation of ``answer`` (a ``Prediction`` of the whole text) from ``variants`` (the
    predictions with each of ``spans`` left out, in order; none for a text of one sentence)."""
    codes = []
    if variants:
        for best in answer.levels:
            if best.level in EXPLAINED_LEVELS:
                effects = [round(best.probability - code_probability(v, best.level, best.code), 6) for v in variants]
                codes.append(CodeExplanation(best.level, best.code, best.probability, effects))
    return Explanation(METHOD, list(spans), count, count > len(spans), codes)
