"""The CPC / IPC hierarchy below the sections: parsing codes and looking up their English titles.

This is the only place that parses a classification code. A patent's ``ipc`` field lists its codes,
main code first, ``;``-separated, e.g. ``G06F 3/048 (20130101); H04N 5/44 (20110101)``; older
grants zero-pad the group (``A61K 039/00 ()``). We keep each code down to its subclass (``G06F``):
the levels this project predicts (section ``G``, class ``G06``, subclass ``G06F``), and its main group
(``G06F 3/00``), which the neighbours in a patent index vote for (``groups.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from patentclf.corpus.labels import CODES

# A section letter, optionally a two-digit class, optionally a subclass letter. What follows a
# subclass may be its group ("3/048", "53/94", " 039/00"); a bare section or class must end there
# (or at a space / bracket), so "G6F" or "G06FF" are refused. Letters match in either case.
_CODE = re.compile(r"^\s*([A-HY])(?:(\d{2})(?:([A-Z])(?=$|[\s\d/(])|(?=$|[\s(]))|(?=$|[\s(]))", re.IGNORECASE)
LEVELS = ("section", "class", "subclass")
# A subclass, then its group number (zero-padded in older grants) before the slash.
_GROUP = re.compile(r"^\s*([A-HY]\d{2}[A-Z])\s*0*(\d{1,4})\s*/", re.IGNORECASE)


class CodeError(ValueError):
    """A classification code that cannot be read."""


def parse_code(text: str) -> str:
    """One code -> its section / class / subclass prefix, upper-case: ``"g06f 3/048"`` -> ``"G06F"``,
    ``"A61K 039/00 ()"`` -> ``"A61K"``, ``"H04"`` -> ``"H04"``. Raises :class:`CodeError` otherwise."""
    match = _CODE.match(text or "")
    if not match:
        raise CodeError(f"not a CPC/IPC code: {text!r} (expected e.g. G, G06, G06F or G06F 3/048)")
    section, klass, subclass = match.groups()
    return (section + (klass or "") + (subclass or "")).upper()


def _each_code(text: object, read) -> list[str]:
    """``read`` applied to each ``;``-separated item of an ``ipc`` field, in order, each result once;
    items it reads as ``None`` (or refuses with :class:`CodeError`) are skipped; no field gives ``[]``."""
    if not isinstance(text, str):
        return []
    codes: list[str] = []
    for item in text.split(";"):
        try:
            code = read(item)
        except CodeError:
            continue
        if code and code not in codes:
            codes.append(code)
    return codes


def parse_code_list(text: object) -> list[str]:
    """An ``ipc`` field -> its codes in order (main code first), duplicates removed, unreadable
    items skipped. An empty or missing field gives ``[]``."""
    return _each_code(text, parse_code)


def main_group(text: str) -> str | None:
    """A full code -> its main group in CPC's spelling: ``"G06F 3/048 (20130101)"`` -> ``"G06F 3/00"``,
    ``"A61K 039/00"`` -> ``"A61K 39/00"``; ``None`` for a code without a group (``"G06F"``)."""
    match = _GROUP.match(text or "")
    return f"{match.group(1).upper()} {int(match.group(2))}/00" if match else None


_FULL = re.compile(r"^\s*([A-HY]\d{2}[A-Z])\s*0*(\d{1,4})\s*/\s*(\d{1,6})", re.IGNORECASE)


def full_code(text: str) -> str | None:
    """A code as listed on a grant -> CPC's spelling down to its subgroup: ``"G06F 3/048 (20130101)"`` ->
    ``"G06F 3/048"``, ``"A61K 038/16 ()"`` -> ``"A61K 38/16"``; ``None`` without a group."""
    match = _FULL.match(text or "")
    return f"{match.group(1).upper()} {int(match.group(2))}/{match.group(3)}" if match else None


# A code as a person writes it, down to its main group: a section, class, subclass, or subclass and
# main group ("G06F 3/00", "g06f3/00", "G06F 003/00"). ASCII only, spelled out (no IGNORECASE, which
# lets [A-Z] match the Kelvin sign).
_GIVEN_CODE = re.compile(r"([A-HYa-hy])(?:([0-9]{2})(?:([A-Za-z])(?: *([0-9]{1,4}) */ *00)?)?)?")


def canonical_code(text: object) -> str:
    """A section, class, subclass or main group as a person writes it -> CPC's spelling, upper-case:
    ``"g06f3/00"`` -> ``"G06F 3/00"``, ``"A61K 039/00"`` -> ``"A61K 39/00"``, ``" h04n "`` -> ``"H04N"``.
    Raises :class:`CodeError` for anything else; a subgroup (``G06F 3/048``) is refused naming its main group."""
    stripped = text.strip() if isinstance(text, str) else ""
    match = _GIVEN_CODE.fullmatch(stripped)
    if match:
        section, klass, subclass, group = match.groups()
        code = (section + (klass or "") + (subclass or "")).upper()
        return f"{code} {int(group)}/00" if group is not None else code
    subgroup = _FULL.match(stripped)
    if subgroup and subgroup.end() == len(stripped):
        raise CodeError(f"{text!r} is a subgroup: give its main group, {main_group(stripped)}")
    raise CodeError(f"not a CPC code: {text!r} (expected a section G, a class G06, a subclass G06F or a main group G06F 3/00)")


def parse_index_codes(text: object) -> list[str]:
    """An ``ipc`` field -> its codes as a patent index keeps them: each down to its subgroup where it
    has one (``G06F 3/048``), else its section / class / subclass (a correction names at most a
    subclass); unreadable items skipped."""
    return _each_code(text, lambda item: full_code(item) or parse_code(item))


def parse_group_list(text: object) -> list[str]:
    """An ``ipc`` field -> the main groups of its codes in order (main code's first), duplicates
    removed; codes without a group are skipped."""
    return _each_code(text, main_group)


def level(code: str) -> str:
    """``"G"`` -> section, ``"G06"`` -> class, ``"G06F"`` -> subclass."""
    return LEVELS[{1: 0, 3: 1, 4: 2}[len(code)]]


def class_of(code: str) -> str | None:
    return code[:3] if len(code) >= 3 else None


def subclass_of(code: str) -> str | None:
    return code[:4] if len(code) >= 4 else None


@dataclass(frozen=True)
class Targets:
    """What a row's codes say at each level: the main code's class / subclass and every section."""

    main_class: str | None
    main_subclass: str | None
    sections: frozenset[str]
    classes: frozenset[str]
    subclasses: frozenset[str]


def targets(codes: list[str]) -> Targets | None:
    """The hierarchy targets of a row's codes (``None`` when it has none)."""
    if not codes:
        return None
    return Targets(
        main_class=class_of(codes[0]),
        main_subclass=subclass_of(codes[0]),
        sections=frozenset(c[0] for c in codes if c[0] in CODES),
        classes=frozenset(filter(None, map(class_of, codes))),
        subclasses=frozenset(filter(None, map(subclass_of, codes))),
    )


@lru_cache(maxsize=1)
def titles() -> dict[str, str]:
    """English CPC titles of sections, classes, subclasses and main groups (shipped copy, CPC 2022.08 + H10)."""
    folder = resources.files("patentclf") / "resources" / "cpc-titles"
    table: dict[str, str] = {}
    for name in ("sections.tsv", "classes.tsv", "subclasses.tsv", "groups.tsv"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            code, _, title = line.partition("\t")
            if code:
                table[code.strip()] = title.strip()
    return table


def title(code: str) -> str:
    """The code's English title, in the CPC's sentence case (:func:`sentence_case`); ``""`` for codes the
    CPC list does not have (a few retired IPC subclasses such as C13D)."""
    return sentence_case(titles().get(code, ""))


# Words of a title in capitals kept as they are: the abbreviations in the titles of the CPC's sections,
# classes and subclasses, and a few common ones. Bracketed abbreviations ("[ICT]", "[IoT]"), codes
# ("C05B", "F01-F04", "3D") and single letters ("SECTION D", "X-RAY") are kept anyway.
ABBREVIATIONS = frozenset({"AC", "DC", "IPC", "USPC", "US", "CPC", "DNA", "RNA", "CPU", "LED", "LCD", "ICT", "PV", "GPS", "RFID"})
# A bracketed part, "e.g." or "i.e.", or a run of letters and digits (a hyphen or an apostrophe splits words).
_WORD = re.compile(r"\[[^\]]*\]|\b[ei]\.[ge]\.|[^\W_]+", re.IGNORECASE)
# The first letter of the title and of each part after a semicolon, as the CPC's main groups write them.
_PART_START = re.compile(r"(^|;\s*)([^\W\d_])")


def _in_capitals(text: str) -> bool:
    """Every word in capitals but for bracketed ones, "e.g.", "i.e." and a code list's "and" / "or"
    ("SUBCLASSES F21K, F21L, F21S and F21V")."""
    words = [w for w in _WORD.findall(text) if not w.startswith("[") and "." not in w and w not in ("and", "or")]
    return any(w.isupper() for w in words) and all(w.isupper() or not any(c.isalpha() for c in w) for w in words)


def _word_in_sentence_case(match: re.Match) -> str:
    word = match.group()
    if word.startswith("[") or word in ABBREVIATIONS or len(word) == 1 and word != "A" or any(c.isdigit() for c in word):
        return word
    return word.lower()


def sentence_case(text: str) -> str:
    """A title in capitals (the CPC writes its sections, classes and subclasses so) -> the CPC's sentence
    case, as its main groups are written: a capital at the start and after each semicolon, abbreviations
    and codes kept: ``"COMPUTING; CALCULATING; COUNTING"`` -> ``"Computing; Calculating; Counting"``,
    ``"PICTORIAL COMMUNICATION, e.g. TELEVISION"`` -> ``"Pictorial communication, e.g. television"``.
    A title already in mixed case is returned as it is."""
    if not isinstance(text, str) or not _in_capitals(text):
        return text if isinstance(text, str) else ""
    lowered = _WORD.sub(_word_in_sentence_case, text)
    return _PART_START.sub(lambda m: m.group(1) + m.group(2).upper(), lowered)
