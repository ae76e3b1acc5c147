"""Links to public pages (corpus/links.py): patents to Google Patents, CPC codes to the scheme on Espacenet."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from patentclf.corpus.links import cpc_symbol, cpc_url, patent_number, patent_url

ESPACENET = "https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC="


@pytest.mark.parametrize(
    ("code", "symbol"),
    [
        ("G", "G"),  # section
        ("Y", "Y"),
        ("G06", "G06"),  # class
        ("G06F", "G06F"),  # subclass
        ("g06f", "G06F"),
        (" H04L ", "H04L"),
        ("G06F 3/00", "G06F3/00"),  # main group
        ("G06F3/00", "G06F3/00"),
        ("G06F 3/048", "G06F3/048"),  # subgroup
        ("G06F 3/048 (20130101)", "G06F3/048"),  # as a grant lists it
        ("A61K 039/00 ()", "A61K39/00"),  # zero-padded by older grants
        ("A61K 2300/00", "A61K2300/00"),  # an indexing code
        ("H10B 12/00", "H10B12/00"),  # class H10 (2023) is known
    ],
)
def test_a_code_at_every_level_links_to_the_cpc_scheme(code, symbol):
    assert cpc_symbol(code) == symbol
    assert cpc_url(code) == ESPACENET + symbol


@pytest.mark.parametrize(
    "code",
    [
        "",
        "   ",
        "I",  # not a section
        "G6",
        "G06FF",
        "G06F garbage",
        "G06F 3",  # a group without its slash
        "X99Z 1/00",
        "C13D",  # a retired IPC subclass: the CPC has no page for it
        "C13D 1/00",
        "B05I 3/00",  # a typo kept in the bundled data
        "US10718657",
        None,
        42,
        ["G06F"],
    ],
)
def test_what_is_not_a_cpc_code_has_no_link(code):
    assert cpc_symbol(code) is None and cpc_url(code) is None


@pytest.mark.parametrize(
    ("patent_id", "number"),
    [
        ("US10718657", "US10718657"),
        ("US5730984", "US5730984"),
        ("USPP12345", "USPP12345"),  # plant patent
        ("USRE45000", "USRE45000"),  # reissue
        ("USD0654321", "USD654321"),  # design patent, zero-padded
        ("US07851177", "US7851177"),  # zero-padded
        ("US10718657B2", "US10718657"),  # kind code
        ("USRE038551E1", "USRE38551"),
        ("US 10,718,657 B2", "US10718657"),  # as printed
        ("US-10718657-B2", "US10718657"),  # as some data sets write it
        ("us10718657", "US10718657"),
        ("EP1234567A1", "EP1234567"),
        ("US20070285425A1", "US20070285425"),  # a published application
    ],
)
def test_a_patent_number_links_to_google_patents(patent_id, number):
    assert patent_number(patent_id) == number
    assert patent_url(patent_id) == f"https://patents.google.com/patent/{number}"


@pytest.mark.parametrize(
    "patent_id",
    [
        "",
        "12345",
        "row-7",
        "US-a",
        "US",
        "US0",
        "US12",
        "5f1c0a3e9b8d4c2a8e7f6d5c4b3a2918",
        "patent one",
        "US1234567890123",
        None,
        10718657,
    ],
)
def test_what_is_not_a_patent_number_has_no_link(patent_id):
    assert patent_number(patent_id) is None and patent_url(patent_id) is None


def test_every_patent_of_the_shipped_index_has_a_link():
    folder = resources.files("patentclf") / "resources" / "default-model" / "index"
    ids = [json.loads(line)["id"] for line in (folder / "patents.jsonl").read_text(encoding="utf-8").splitlines() if line]
    assert ids and all(patent_url(i) == f"https://patents.google.com/patent/{i}" for i in ids)
