"""CPC / IPC codes: parsing (malformed and missing codes), titles, and the data's code column."""

from __future__ import annotations

import re

import pytest

from patentclf.corpus import data
from patentclf.corpus.hierarchy import (
    ABBREVIATIONS,
    CodeError,
    canonical_code,
    level,
    main_group,
    parse_code,
    parse_code_list,
    parse_group_list,
    sentence_case,
    targets,
    title,
    titles,
)

from .conftest import write_jsonl


@pytest.mark.parametrize(
    "text, code",
    [
        ("G06F 3/048 (20130101)", "G06F"),
        ("A61K 039/00 ()", "A61K"),  # zero-padded old form
        ("  h04n 5/44", "H04N"),
        ("G06F", "G06F"),
        ("G06", "G06"),
        ("Y", "Y"),
        ("B01D53/94", "B01D"),
    ],
)
def test_codes_are_cut_to_the_subclass(text, code):
    assert parse_code(text) == code


@pytest.mark.parametrize("bad", ["", "  ", "Z01B 1/00", "G6F 3/00", "06F", "GG06F", "G06FF", None])
def test_malformed_codes_are_refused(bad):
    with pytest.raises(CodeError):
        parse_code(bad)


def test_code_lists_keep_order_drop_duplicates_and_skip_garbage():
    text = "G06F 3/048 (20130101); H04N 5/44 (20110101); nonsense; G06F 1/16 (20060101); ; A61K 039/00 ()"
    assert parse_code_list(text) == ["G06F", "H04N", "A61K"]
    assert parse_code_list("") == [] and parse_code_list(None) == [] and parse_code_list("n/a; ???") == []


@pytest.mark.parametrize(
    "text, code",
    [
        ("G", "G"),
        ("g06", "G06"),
        (" h04n ", "H04N"),
        ("G06F 3/00", "G06F 3/00"),
        ("g06f3/00", "G06F 3/00"),
        ("A61K 039/00", "A61K 39/00"),  # zero-padded old form
        ("B01D 53 / 00", "B01D 53/00"),
    ],
)
def test_a_code_as_a_person_writes_it_is_spelled_as_cpc_does(text, code):
    assert canonical_code(text) == code
    assert canonical_code(code) == code
    if " " in code:  # what a patent index and training read back from an ipc field
        assert main_group(code) == code and parse_group_list(code) == [code] and parse_code_list(code) == [code[:4]]


@pytest.mark.parametrize("bad", ["", "Z01", "G6", "G06FF", "G06F 3", "G06F 3/01", "G06F 3/00 (2013)", "K06F", None, 7])
def test_codes_a_correction_cannot_give_are_refused(bad):
    with pytest.raises(CodeError, match="not a CPC code|subgroup"):
        canonical_code(bad)


def test_a_subgroup_is_refused_naming_its_main_group():
    with pytest.raises(CodeError, match=r"'G06F 3/048' is a subgroup: give its main group, G06F 3/00"):
        canonical_code("G06F 3/048")


def test_targets_of_a_patent():
    found = targets(["G06F", "H04N", "G06K"])
    assert found.main_class == "G06" and found.main_subclass == "G06F"
    assert found.sections == {"G", "H"}
    assert found.classes == {"G06", "H04"} and found.subclasses == {"G06F", "H04N", "G06K"}
    assert targets([]) is None
    assert level("G") == "section" and level("G06") == "class" and level("G06F") == "subclass"


def test_titles_come_from_the_shipped_cpc_list():
    assert title("G06F") == "Electric digital data processing"
    assert title("H04") == "Electric communication technique"
    assert title("G").lower() == "physics"
    assert title("C13D") == ""  # a retired IPC subclass has no CPC title


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("G", "Physics"),
        ("G06", "Computing; Calculating; Counting"),  # a capital after each semicolon, as CPC's groups write it
        ("H04N", "Pictorial communication, e.g. television"),  # "e.g." kept it in capitals before
        ("H04L", "Transmission of digital information, e.g. telegraphic communication"),
        ("C01D", "Compounds of alkali metals, i.e. lithium, sodium, potassium, rubidium, caesium, or francium"),
        ("H05G", "X-ray technique"),
        ("Y10T", "Technical subjects covered by former US classification"),
        ("D10", "Indexing scheme associated with sublasses of section D, relating to textiles"),
        ("C05F", "Organic fertilisers not covered by subclasses C05B, C05C, e.g. fertilisers from waste or refuse"),
        ("G16Y", "Information and communication technology specially adapted for the internet of things [IoT]"),
        ("C08K", "Use of inorganic or non-macromolecular organic substances as compounding ingredients"),
        ("A01B 1/00", "Hand tools"),  # main groups are in sentence case already
    ],
)
def test_titles_are_in_the_cpcs_sentence_case(code, expected):
    assert title(code) == expected


def test_every_title_of_a_section_class_or_subclass_is_out_of_capitals():
    for code in (c for c in titles() if " " not in c):
        unbracketed = re.sub(r"\[[^\]]*\]", "", title(code))
        shouting = [w for w in re.findall(r"[^\W\d_]{2,}", unbracketed) if w.isupper() and w not in ABBREVIATIONS]
        assert not shouting, (code, title(code))


def test_sentence_case_keeps_abbreviations_and_mixed_case():
    assert (
        sentence_case("APPARATUS FOR CONVERSION BETWEEN AC AND DC; DNA SEQUENCING")
        == "Apparatus for conversion between AC and DC; DNA sequencing"
    )
    assert sentence_case("WORKING-UP; AFTER-TREATMENT NOT COVERED BY SUBCLASSES C08B, C08C or C08H") == (
        "Working-up; After-treatment not covered by subclasses C08B, C08C or C08H"
    )
    assert sentence_case("Wheel mounted data logger with GPS") == "Wheel mounted data logger with GPS"
    assert sentence_case("LOW-ALLOY STEEL FOR OIL AND/OR GAS") == "Low-alloy steel for oil and/or gas"
    assert sentence_case("") == "" and sentence_case("3/00") == "3/00" and sentence_case(None) == ""


def test_every_main_class_of_the_bundled_data_has_a_title():
    train = data.load_split("bundled", "train")
    main_classes = {codes[0][:3] for codes in train.codes}
    assert main_classes and all(title(c) for c in main_classes)


def test_rows_read_their_codes_and_rows_without_keep_their_section(tmp_path):
    rows = [
        {"text": "a lens", "section": "G", "ipc": "G02B 1/00 (20060101); H04N 5/44"},
        {"text": "a pump", "section": "F", "ipc": ""},
        {"text": "a pipe", "section": "F", "ipc": "unreadable"},
        {"text": "a valve", "section": "F"},
    ]
    split = data.read_file(write_jsonl(tmp_path / "rows.jsonl", rows))
    assert split.codes == [["G02B", "H04N"], [], [], []]
    assert split.labels == [6, 5, 5, 5]
    sections_only = data.read_file(write_jsonl(tmp_path / "plain.jsonl", [{"text": "a valve", "section": "F"}]))
    assert sections_only.codes == [[]] and not sections_only.has_codes


def test_bundled_splits_share_no_near_duplicate_patents():
    import json

    folder = data.bundled_data_dir()
    rows, splits = [], []
    for name in ("train", "validation", "test"):
        for line in (folder / f"{name}.jsonl").read_text().splitlines():
            rows.append(json.loads(line))
            splits.append(name)
    crossing = [(a, b) for a, b in data.near_duplicate_pairs(rows) if splits[a] != splits[b]]
    assert crossing == []
    # The detector does find the near-duplicates that exist within the training split.
    assert any(splits[a] == splits[b] == "train" for a, b in data.near_duplicate_pairs(rows))


def test_near_duplicates_need_the_same_title_and_most_of_the_abstract():
    base = "a pump for moving fluid through a pipe with a rotor and a housing and a seal between them"
    rows = [
        {"title": "Fluid pump", "abstract": base},
        {"title": "Fluid  PUMP.", "abstract": base + " and a motor"},
        {"title": "Fluid pump", "abstract": "a completely different text about optical lenses and their coatings for cameras"},
        {"title": "Water pump", "abstract": base},
    ]
    assert data.near_duplicate_pairs(rows) == [(0, 1)]
