"""An answer of ``POST /predict`` from a model with the hierarchy heads (sections, classes, subclasses),
for the UI tests until such a model is shipped: the real response shape (checked against the API's
schema by ``hierarchy_answer``), with real CPC codes and titles (CPC Title List 2022.08) for the H example of ui/examples.py;
and a reader of the HTML tables the page draws the answer in (``html_tables``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from html.parser import HTMLParser

from patentclf.corpus.labels import CODES
from patentclf.service.schemas import PredictionResponse


def _suggestions(*items: tuple[str, str, float]) -> list[dict]:
    return [{"code": code, "title": title, "probability": probability} for code, title, probability in items]


_ANSWER = {
    "id": "5f1c0a3e9b8d4c2a8e7f6d5c4b3a2918",
    "label": "H",
    "name": "Electricity",
    "label_id": CODES.index("H"),
    "confidence": 0.71,
    "probabilities": {"A": 0.01, "B": 0.01, "C": 0.005, "D": 0.005, "E": 0.01, "F": 0.01, "G": 0.22, "H": 0.71, "Y": 0.02},
    "truncated": False,
    "chunks": 1,
    "needs_review": False,
    "model_version": "model@hierarchy-sample",
    "sections": ["H", "G"],
    "section_probabilities": {"H": 0.88, "G": 0.57},
    "classes": _suggestions(
        ("H04", "ELECTRIC COMMUNICATION TECHNIQUE", 0.62),
        ("G06", "COMPUTING; CALCULATING; COUNTING", 0.21),
        ("G07", "CHECKING-DEVICES", 0.06),
        ("G09", "EDUCATION; CRYPTOGRAPHY; DISPLAY; ADVERTISING; SEALS", 0.04),
        ("G08", "SIGNALLING", 0.02),
    ),
    "subclasses": _suggestions(
        ("H04M", "TELEPHONIC COMMUNICATION", 0.47),
        (
            "G06Q",
            "DATA PROCESSING SYSTEMS OR METHODS, SPECIALLY ADAPTED FOR ADMINISTRATIVE, COMMERCIAL, FINANCIAL, MANAGERIAL, "
            "SUPERVISORY OR FORECASTING PURPOSES; SYSTEMS OR METHODS SPECIALLY ADAPTED FOR ADMINISTRATIVE, COMMERCIAL, "
            "FINANCIAL, MANAGERIAL, SUPERVISORY OR FORECASTING PURPOSES, NOT OTHERWISE PROVIDED FOR",
            0.18,
        ),
        ("H04W", "WIRELESS COMMUNICATION NETWORKS", 0.09),
        ("H04L", "TRANSMISSION OF DIGITAL INFORMATION, e.g. TELEGRAPHIC COMMUNICATION", 0.05),
        ("G07F", "COIN-FREED OR LIKE APPARATUS", 0.03),
    ),
    "levels": [
        {"level": "section", "code": "H", "title": "Electricity", "probability": 0.71, "right_share": 0.702},
        {"level": "class", "code": "H04", "title": "Electric communication technique", "probability": 0.62, "right_share": 0.597},
        {"level": "subclass", "code": "H04M", "title": "Telephonic communication", "probability": 0.47, "right_share": 0.455},
    ],
    "review_reasons": [],
    "evidence_disagrees": False,
}


def hierarchy_answer(**changes) -> dict:
    """A fresh copy of the sample answer (with ``changes``), validated by the API's response model."""
    answer = {**copy.deepcopy(_ANSWER), **changes}
    PredictionResponse.model_validate(answer)
    return answer


# -- reading the answer's HTML tables (ui/tables.py) ------------------------------------------------


@dataclass
class Cell:
    text: str = ""
    links: list[dict[str, str]] = field(default_factory=list)  # each <a>'s attributes and its "text"
    hover: list[str] = field(default_factory=list)  # the title attributes in the cell

    @property
    def href(self) -> str | None:
        return self.links[0]["href"] if self.links else None


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]

    def column(self, name: str) -> list[Cell]:
        return [row[self.header.index(name)] for row in self.rows]


class _TableReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self.cell: Cell | None = None
        self.link: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.tables.append(Table([], []))
        elif tag == "tr" and self.tables:
            self.tables[-1].rows.append([])
        elif tag in ("td", "th"):
            self.cell = Cell()
            self.tables[-1].rows[-1].append(self.cell)
        elif tag == "a" and self.cell is not None:
            self.link = {**attrs, "text": ""}
            self.cell.links.append(self.link)
        if self.cell is not None and "title" in attrs:
            self.cell.hover.append(attrs["title"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None
        elif tag == "a":
            self.link = None
        elif tag == "thead" and self.tables:
            self.tables[-1].header = [c.text for c in self.tables[-1].rows.pop()]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.text += data
        if self.link is not None:
            self.link["text"] += data


def html_tables(markdown: list[str]) -> list[Table]:
    """Every HTML table in the page's Markdown elements, in order: header, and each cell's text, links
    and hover titles."""
    tables = []
    for text in markdown:
        reader = _TableReader()
        reader.feed(text)
        tables += reader.tables
    return tables
