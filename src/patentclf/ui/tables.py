"""Small HTML tables for the answer: codes linked to the CPC scheme, patents to Google Patents, titles
whole on hover.

``st.table`` shows neither links nor tooltips, and ``st.dataframe`` draws on a canvas, one link per
cell at most; a plain HTML table, drawn by ``st.markdown(..., unsafe_allow_html=True)``, has real
``<a href>`` links (opening in a new tab) and a ``title`` attribute on each title, which the browser
shows on hover. Everything from the answer is escaped here; the links are made in
:mod:`patentclf.corpus.links` (nothing is fetched).
"""

from __future__ import annotations

from html import escape

from patentclf.corpus.hierarchy import sentence_case
from patentclf.corpus.links import cpc_url, patent_url

TITLE_CHARS = 110  # a few subclass titles run to 400 characters; the table stays compact

# Streamlit styles a Markdown table with a grid; these keep it as compact as st.table was: the width of
# the page, small text, lines between the rows only; the code and number columns of a fixed width, so
# that the tables one under the other line up.
_TABLE = "width:100%;font-size:0.875rem;border-collapse:collapse"
_CELL = "border-left:none;border-right:none;padding:0.25rem 0.5rem;vertical-align:top"
_FIRST = _CELL + ";width:8rem"
_NUMBER = _CELL + ";width:6rem;text-align:right;white-space:nowrap"


def link(text: str, url: str | None) -> str:
    """``text`` as a link to ``url`` that opens in a new tab; the escaped text alone without a url."""
    if not url:
        return escape(text)
    return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(text)}</a>'


def code_link(code: str) -> str:
    """A CPC code linked to its page in the scheme (plain text when it has none)."""
    return link(code, cpc_url(code))


def patent_link(patent_id: str) -> str:
    """A patent's id linked to its page on Google Patents (plain text for an id that is not a number)."""
    return link(patent_id, patent_url(patent_id))


def short(title: str) -> str:
    """The title cut to :data:`TITLE_CHARS` with "…"."""
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def title_cell(title: str) -> str:
    """A title in sentence case, cut to :data:`TITLE_CHARS`, whole on hover."""
    whole = sentence_case(title or "")
    return f'<span title="{escape(whole)}">{escape(short(whole))}</span>'


def html_table(header: list[str], rows: list[list[str]], numbers: tuple[int, ...] = ()) -> str:
    """An HTML table of cells that are HTML already (escape the answer's text with the helpers above);
    the columns in ``numbers`` are right-aligned. One line: a blank line would end Markdown's HTML block."""

    def cells(tag: str, values: list[str]) -> str:
        styles = [_NUMBER if i in numbers else _FIRST if i == 0 else _CELL for i in range(len(values))]
        return "".join(f'<{tag} style="{style}">{v}</{tag}>' for style, v in zip(styles, values))

    head = f"<thead><tr>{cells('th', [escape(h) for h in header])}</tr></thead>"
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table style="{_TABLE}">{head}<tbody>{body}</tbody></table>'
