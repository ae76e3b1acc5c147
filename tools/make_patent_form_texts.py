"""Build the corpus of patent texts in forms other than an abstract:
``src/patentclf/resources/patent-forms/texts.jsonl``.

Run from the repository root: ``python tools/make_patent_form_texts.py`` (``--check``: rebuild in memory
and compare with the shipped file instead of writing it). Stdlib and the package's
``corpus.screening`` (the forms, the checks) only; reads the hand-written texts of
``tools/patent_form_texts/written.txt`` (claims, claim sets and description paragraphs of invented
inventions, over the nine CPC sections) and the bundled USPTO abstracts (only for the check that no text
repeats 12 words in a row of one; shorter runs are patent boilerplate, "It is an object of the
invention to provide", "instructions that, when executed by a processor, cause the processor to").

Each text gets an ``id`` (form, section, number) and a ``split`` (``fit`` or ``measure``): the texts of
one form, in file order (by section), are dealt out in a fixed pattern of five, two of them ``measure``,
the pattern shifted by one for each form, so that both splits hold every form and every section and
about 60% of the texts are ``fit``. No randomness: the same file gives the same splits.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "patentclf" / "resources" / "patent-forms" / "texts.jsonl"
WRITTEN = ROOT / "tools" / "patent_form_texts" / "written.txt"
USPTO = ROOT / "src" / "patentclf" / "resources" / "uspto-abstracts"
sys.path.insert(0, str(ROOT / "src"))
from patentclf.corpus.screening import PATENT_FORMS as FORMS  # noqa: E402 - the forms the loader knows, declared once

SECTIONS = tuple("ABCDEFGHY")
CASINGS = ("upper", "lower")
MEASURE_SLOTS = (1, 3)  # of each run of five texts of a form: 2 of 5 measured, 3 of 5 fitted
MIN_WORDS = 20
CLAIM_WORDS = (40, 150)  # an independent claim, whole


def written_texts() -> list[dict]:
    """The blocks of ``written.txt`` in file order: ``form``, ``section``, ``text`` (casing applied)."""
    rows: list[dict] = []
    head: list[str] | None = None
    lines: list[str] = []

    def close() -> None:
        if head is None:
            return
        section, form, *casing = head
        if section not in SECTIONS or form not in FORMS or casing not in ([], ["upper"], ["lower"]):
            raise ValueError(f"bad header: {' '.join(head)}")
        text = "\n".join(lines).strip()
        if casing == ["upper"]:
            text = text.upper()
        elif casing == ["lower"]:
            text = text.lower()
        rows.append({"form": form, "section": section, "text": text})

    for line in WRITTEN.read_text(encoding="utf-8").splitlines():
        if line.startswith("==="):
            close()
            head, lines = line[3:].split(), []
        elif head is not None and not line.startswith("#"):
            lines.append(line)
    close()
    return rows


def build() -> list[dict]:
    rows = written_texts()
    numbers: collections.Counter = collections.Counter()
    position: collections.Counter = collections.Counter()
    out = []
    for row in rows:
        form, section = row["form"], row["section"]
        numbers[form, section] += 1
        i = position[form] + FORMS.index(form)
        position[form] += 1
        out.append(
            {
                "id": f"{form}-{section.lower()}-{numbers[form, section]:02d}",
                "form": form,
                "section": section,
                "split": "measure" if i % 5 in MEASURE_SLOTS else "fit",
                "text": row["text"],
            }
        )
    check(out)
    return out


def normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


# No text repeats this many words in a row of a bundled abstract (title included). Measured at 8: 22 runs
# of 8 shared, all boilerplate ("the present invention relates to the field of", "a valve body having
# an inlet and an outlet").
SHINGLE = 12


def shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def check(rows: list[dict]) -> None:
    """Unique ids and texts, lengths, every form and section in both splits, not flagged by the
    screening, and no :data:`SHINGLE` words in a row of a bundled USPTO abstract."""
    from patentclf.corpus.screening import probably_not_english, too_short, word_count

    assert len({r["id"] for r in rows}) == len(rows), "duplicate id"
    texts = collections.Counter(normal(r["text"]) for r in rows)
    assert not [t for t, n in texts.items() if n > 1], "duplicate text"
    for r in rows:
        n = word_count(r["text"])
        assert n >= MIN_WORDS, (r["id"], n)
        if r["form"] == "independent-claim":
            assert CLAIM_WORDS[0] <= n <= CLAIM_WORDS[1], (r["id"], n)
        assert not too_short(r["text"]) and not probably_not_english(r["text"]), r["id"]
    for split in ("fit", "measure"):
        part = [r for r in rows if r["split"] == split]
        assert {r["form"] for r in part} == set(FORMS), split
        assert {r["section"] for r in part} == set(SECTIONS), split
    ours = set().union(*(shingles(r["text"]) for r in rows))
    for name in ("train", "validation", "test"):
        for line in (USPTO / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                p = json.loads(line)
                shared = ours & shingles(p["title"] + " " + p["abstract"])
                assert not shared, (p["id"], sorted(shared)[:3])


def summary(rows: list[dict]) -> str:
    lines = []
    for key in ("form", "section"):
        table = collections.Counter((r[key], r["split"]) for r in rows)
        for value in FORMS if key == "form" else SECTIONS:
            fit, measure = table[value, "fit"], table[value, "measure"]
            lines.append(f"| {value} | {fit} | {measure} | {fit + measure} |")
        lines.append("")
    fit = sum(r["split"] == "fit" for r in rows)
    lines.append(f"| **all** | **{fit}** | **{len(rows) - fit}** | **{len(rows)}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = parser.parse_args()
    rows = build()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{OUT} differs from a rebuild")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
