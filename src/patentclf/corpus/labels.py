"""The nine CPC sections, in the label order of ``ccdv/patent-classification``.

This is the only place where the sections are spelled out; everything else imports from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    id: int
    code: str
    name: str


SECTIONS: tuple[Section, ...] = (
    Section(0, "A", "Human Necessities"),
    Section(1, "B", "Performing Operations; Transporting"),
    Section(2, "C", "Chemistry; Metallurgy"),
    Section(3, "D", "Textiles; Paper"),
    Section(4, "E", "Fixed Constructions"),
    Section(5, "F", "Mechanical Engineering; Lighting; Heating; Weapons; Blasting"),
    Section(6, "G", "Physics"),
    Section(7, "H", "Electricity"),
    Section(8, "Y", "General Tagging of New or Cross-Sectional Technology"),
)
CODES: tuple[str, ...] = tuple(s.code for s in SECTIONS)
NUM_LABELS = len(SECTIONS)
ID2LABEL: dict[int, str] = {s.id: s.code for s in SECTIONS}
LABEL2ID: dict[str, int] = {s.code: s.id for s in SECTIONS}


def parse_label(value: object) -> int:
    """Turn a label id (0..8, int or digit string) or a section letter into a label id.

    Raises ``ValueError`` with the offending value for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"unknown label {value!r}")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        if 0 <= int(value) < NUM_LABELS:
            return int(value)
        raise ValueError(f"label id {value!r} is outside 0..{NUM_LABELS - 1}")
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in LABEL2ID:
            return LABEL2ID[text.upper()]
        if text.isdigit():
            return parse_label(int(text))
    raise ValueError(f"unknown label {value!r}: expected a section letter {'/'.join(CODES)} or an id 0..8")


def section(label: int | str) -> Section:
    return SECTIONS[parse_label(label)]
