"""The answer's HTML tables (ui/tables.py): what comes from the answer is escaped, links open in a new tab."""

from __future__ import annotations

from patentclf.ui.tables import TITLE_CHARS, code_link, html_table, link, patent_link, title_cell

from .ui_samples import html_tables


def test_text_from_the_answer_is_escaped():
    cell = title_cell('A "quoted" <b>bold</b> & more')
    assert (
        cell
        == '<span title="A &quot;quoted&quot; &lt;b&gt;bold&lt;/b&gt; &amp; more">A &quot;quoted&quot; &lt;b&gt;bold&lt;/b&gt; &amp; more</span>'
    )
    assert patent_link("<script>") == "&lt;script&gt;"  # not a patent number: plain, escaped text
    assert link("x", 'https://example.org/?a=1&b="2"') == (
        '<a href="https://example.org/?a=1&amp;b=&quot;2&quot;" target="_blank" rel="noopener noreferrer">x</a>'
    )


def test_a_table_reads_back_with_its_links_and_hover():
    long = "WORD " * 60
    html = html_table(
        ["Code", "Title", "Probability"],
        [[code_link("G06F"), title_cell(long), "1.0%"], [code_link("??"), title_cell(""), "0.5%"]],
        numbers=(2,),
    )
    assert "\n" not in html  # a blank line would end Markdown's HTML block
    (table,) = html_tables([html])
    assert table.header == ["Code", "Title", "Probability"]
    first, second = table.rows
    assert first[0].links[0]["href"].endswith("#!/CPC=G06F") and first[0].links[0]["target"] == "_blank"
    # In sentence case, cut to fit, whole on hover.
    assert len(first[1].text) <= TITLE_CHARS and first[1].text.endswith("…")
    assert first[1].hover == ["Word" + " word" * 59 + " "]
    assert second[0].text == "??" and not second[0].links and second[1].text == ""
