"""Links to public pages: a patent's page on Google Patents, a CPC code's place in the CPC scheme.

Pure functions that only build addresses (nothing is fetched, here or by their callers), so the UI,
and later the API, link the same way. Each returns ``None`` for what it cannot link, and never raises.

The CPC scheme is linked on Espacenet, the EPO's browser of the scheme: one address form serves every
level, from a section to a subgroup (``...#!/CPC=G``, ``G06``, ``G06F``, ``G06F3/00``, ``G06F3/048``),
and it is the form the identifier registries give for CPC codes (Bioregistry / identifiers.org prefix
``cpc``: ``https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC=$1``, example
``A01M1/026``). The USPTO's scheme pages (``.../cpc/html/cpc-G06F.html``) hold one subclass each, with
no page for a code above that level, so they would need two forms and anchors. The code after ``#!``
is a fragment: the browser does not send it, and Espacenet's page reads it to open the code.

A patent is linked on Google Patents by its publication number without a kind code
(``https://patents.google.com/patent/US10718657``), which the site resolves to the granted document;
the prefix of a reissue (``USRE``), plant (``USPP``) or design (``USD``) patent is part of the number.
"""

from __future__ import annotations

import re

from patentclf.corpus.hierarchy import CodeError, full_code, parse_code, titles

PATENT_PAGE = "https://patents.google.com/patent/{}"
CPC_PAGE = "https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC={}"

# A publication number as an index or a data set writes it: a country ("US"), an optional document type
# (reissue, plant, design, statutory invention registration, defensive publication), the number
# (zero-padded in some sources: "US07851177"), an optional kind code ("B2", "E1", "P2"). Spaces, commas
# and hyphens ("US 10,718,657 B2", "US-10718657-B2") are read away first.
_PATENT = re.compile(r"([A-Z]{2})(RE|PP|D|H|T)?0*([1-9]\d{3,11})([A-Z]\d?)?")
_SEPARATORS = re.compile(r"[\s,\-]")
# A code above the groups, written alone: "G", "G06", "G06F" (any case, spaces around).
_BARE_CODE = re.compile(r"\s*[A-HY](?:\d{2}[A-Z]?)?\s*", re.IGNORECASE)


def patent_number(patent_id: object) -> str | None:
    """A patent's id -> its publication number as Google Patents spells it (no zero padding, no kind
    code): ``"US10718657"``, ``"US 10,718,657 B2"`` -> ``"US10718657"``, ``"USRE038551E1"`` ->
    ``"USRE38551"``; ``None`` for an id that is not a patent number (a row number, a UUID, ``""``)."""
    if not isinstance(patent_id, str):
        return None
    match = _PATENT.fullmatch(_SEPARATORS.sub("", patent_id).upper())
    if not match:
        return None
    country, kind, number, _ = match.groups()
    return f"{country}{kind or ''}{number}"


def patent_url(patent_id: object) -> str | None:
    """A patent's page on Google Patents: ``"US10718657"`` -> ``https://patents.google.com/patent/US10718657``;
    ``None`` for an id that is not a patent number."""
    number = patent_number(patent_id)
    return PATENT_PAGE.format(number) if number else None


def cpc_symbol(code: object) -> str | None:
    """A code at any level -> its symbol as the CPC scheme's pages write it (no space): ``"G"``, ``"G06"``,
    ``"G06F"``, ``"G06F 3/00"`` -> ``"G06F3/00"``, ``"A61K 039/00 (20130101)"`` -> ``"A61K39/00"``.
    ``None`` for what is not a code, and for a code whose subclass, class or section the CPC does not
    have (a retired IPC subclass such as C13D): its page would be empty."""
    if not isinstance(code, str):
        return None
    try:
        if _BARE_CODE.fullmatch(code):
            symbol = parse_code(code)
        elif group := full_code(code):
            symbol = group.replace(" ", "")
        else:
            return None
    except CodeError:
        return None
    return symbol if symbol[:4] in titles() else None


def cpc_url(code: object) -> str | None:
    """A code's page in the CPC scheme on Espacenet, at any level: ``"G06F 3/00"`` ->
    ``https://worldwide.espacenet.com/classification?locale=en_EP#!/CPC=G06F3/00``; ``None`` for what
    :func:`cpc_symbol` does not read."""
    symbol = cpc_symbol(code)
    return CPC_PAGE.format(symbol) if symbol else None
