"""Text-only screening: is a text too short to classify, or probably not English? No model involved.

The classifier answers every text with confidence, nonsense included. These checks read the text
alone (stdlib only, about 0.2 ms per abstract) and give the reasons a caller can show beside an
answer: ``too_short`` (fewer than :data:`SHORT_WORDS` words) and ``probably_not_english``.

The language guess counts function words ("the", "of", "und", "der", "le", "de", ...) from small
built-in lists for English, German, French, Spanish, Italian, Portuguese, Dutch and Latin (lorem
ipsum is Latin-like), and the share of letters outside the Latin script (CJK, Cyrillic, Arabic,
Greek, ... are not English). A Latin-script text in a language without a list (Polish, Swedish,
Turkish, ...) is recognised by its accented letters. A text of fewer than
:data:`MIN_WORDS_FOR_LANGUAGE` words is not judged: it is too short instead. Measured
(``tests/test_screening.py``): none of the 9,899 bundled USPTO abstracts is flagged (title + abstract,
or the abstract alone), and all 124 non-English texts of 8 words or more in the corpus are.

``non_patent_texts`` loads the shipped corpus of non-patent texts (``resources/non-patent-texts``),
the negatives for a "not patent-like" detector and the test set of these checks.
``patent_form_texts`` loads the shipped patent texts in forms other than an abstract (claims, claim
sets, description paragraphs; ``resources/patent-forms``), positives for that detector.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# "Too short to classify": fewer words than this. Measured on 300 bundled test abstracts cut to their
# first n words (shipped model): section accuracy 49% at 2 words, 53% at 3, 61% at 5, 68% at 8, 71% at
# 12 (78% whole), with the mean confidence 14, 12 and 8 points above the accuracy below 8 words and 3-4
# points above it from 8 on: below 8 words the answer is both weaker and overconfident.
SHORT_WORDS = 8

# Fewer words than this are not judged on their language ("unknown"): they are too short instead.
MIN_WORDS_FOR_LANGUAGE = 5

# A text whose letters are mostly outside the Latin script is not English: share of letter units
# (a CJK character is one unit, another script's word is one) at or above this.
NON_LATIN_SHARE = 0.3
# A Latin-script text whose words carry accented letters (é, ü, ß, ą, ş, ...) this often is not English,
# unless English function words dominate it clearly. The bundled USPTO abstracts: 0 (all ASCII).
ACCENTED_SHARE = 0.15
# Another language wins when its function words number at least FOREIGN_MIN_WORDS, FOREIGN_MIN_DISTINCT
# of them different, make at least FOREIGN_MIN_SHARE of the words and outweigh English's
# FOREIGN_OVER_ENGLISH times; a stray or repeated word ("die" in "a die casting die") is no evidence.
FOREIGN_MIN_WORDS = 2
FOREIGN_MIN_DISTINCT = 3
FOREIGN_MIN_SHARE = 0.1
FOREIGN_OVER_ENGLISH = 1.5
# Accented words do not outvote English function words making at least this share of the words.
ENGLISH_DESPITE_ACCENTS = 0.2

# The most common function words of each language, lower-case. A word listed for several languages
# counts for each, divided by their number ("in" is English, German, Italian, Dutch and Latin).
# Left out: words that are frequent in English patent text too (Dutch "door" and "u", Italian "non"
# and "per", Latin "id" and "ac"), counted over the bundled USPTO abstracts.
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": """the of and a an to in is are was were be been being for on with as by at from that which
            this these those it its or not but has have had can may will would should could shall must such
            each into than then there their they them when where while more most said wherein whereby
            between through over under about also other both any all only same thereof therein upon within
            without during after before if so do does did we you i he she his her our your my me him us
            what who how why very no nor just well here whether either""",
        "de": """der die das den dem des ein eine einer eines einem einen und oder ist sind war wird werden
            wurde mit von zu zum zur im in auf für bei aus nach durch über unter an am als auch nicht sich
            es er sie wir ich du ihr sein seine ihre ihren dass daß wenn wie so noch nur schon kann können
            muss soll mehr sehr dieser diese dieses welche welcher welches wobei sowie hat haben gegen ohne
            um bis aber doch man vom beim kein keine dabei damit also was wo ins zwischen mittels""",
        "fr": """le la les un une des du de et est sont en dans à pour par sur avec au aux ce cette ces qui
            que qu il elle ils elles nous vous je tu on ne pas plus ou mais se sa son ses leur leurs été
            être avoir a ont fait comme tout tous toutes très aussi sans sous entre dont où lors selon l' d'
            c' s' n' j' qu' peut ainsi était lequel laquelle lesquels afin chez""",
        "es": """el la los las un una unos unas de del y o en por para con sin sobre entre es son está
            están ser fue ha han hay que se su sus al lo le les como más pero muy también ya no este esta
            estos estas ese esa cuando donde porque si sí todo todos nos mi me te yo tú él ella ellos usted
            hasta desde cada dicho dicha mediante cual cuales""",
        "it": """il lo la i gli le un uno una di del della dei delle degli dello al alla ai alle da dal
            dalla in nel nella nei nelle con su sul sulla tra fra e ed è sono era essere ha hanno che
            si come più anche ma se questo questa questi queste quello quella cui dove quando molto
            tutto tutti ci vi mi ti noi voi loro suo sua suoi sue l' d' all' dell' nell' sull' un'""",
        "pt": """o a os as um uma uns umas de do da dos das em no na nos nas por pelo pela pelos pelas
            para com sem sobre entre e ou é são está estão ser foi tem têm há que se seu sua seus suas ao
            aos à às como mais mas muito também já não este esta estes estas esse essa isso isto quando
            onde porque todo todos ele ela eles elas nós você lhe qual quais""",
        "nl": """de het een en of is zijn was werd worden wordt van in op te voor met aan bij uit
            naar over onder tot als ook niet maar dat die dit deze wat wie waar hoe er hij zij ze wij we
            ik je jij hun haar heeft hebben kan kunnen moet zal zou nog al wel geen meer zeer om dan
            toch omdat tussen zonder tegen waarbij""",
        "la": """et in ut est sed cum qui quae quod ex ab nec neque enim sit esse sunt etiam autem vel aut
            atque eius quis quam tamen nisi ne dum""",
    }.items()
}
LANGUAGES = tuple(FUNCTION_WORDS)
_WEIGHT: dict[str, dict[str, float]] = {}
for _lang, _words in FUNCTION_WORDS.items():
    for _word in _words:
        _WEIGHT.setdefault(_word, {})[_lang] = 1.0
for _langs in _WEIGHT.values():
    for _lang in _langs:
        _langs[_lang] = 1.0 / len(_langs)

# A run of letters, with an apostrophe that ends it (the elided articles of French and Italian,
# "l'appareil", "dell'acqua", are words of their own: "l'", "dell'").
_LETTERS = re.compile(r"[^\W\d_]+'?")
# Scripts written without spaces between words: each CJK character counts as one word (as word
# processors count them); a run of Thai, Lao, Khmer or Myanmar as one word per 5 characters (a rough
# average word length; there is no dictionary here to segment them).
_ONE_PER_CHAR = ("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPH")
_NO_SPACE_SCRIPTS = ("THAI", "LAO", "KHMER", "MYANMAR")
_NO_SPACE_WORD = 5


@lru_cache(maxsize=4096)
def _script(char: str) -> str:
    """'latin', 'cjk', 'nospace' (Thai, Lao, Khmer, Myanmar) or 'other' for one non-ASCII character."""
    name = unicodedata.name(char, "")
    if "LATIN" in name:  # LATIN SMALL LETTER E WITH ACUTE, FULLWIDTH LATIN CAPITAL LETTER A
        return "latin"
    if any(part in name for part in _ONE_PER_CHAR):
        return "cjk"
    if name.startswith(_NO_SPACE_SCRIPTS):
        return "nospace"
    return "other"


def _tokens(text: object) -> list[str]:
    """Whitespace-separated tokens of a text in NFC (an accent typed as a combining mark joins its
    letter); none for anything that is not a string."""
    if not isinstance(text, str):
        return []
    return (text if text.isascii() else unicodedata.normalize("NFC", text)).split()


def _units(token: str) -> list[tuple[str, str]]:
    """One whitespace token -> its word units as (script, text): each CJK character, each run of a
    no-space script, each other run that holds a letter or a digit. A run's script is ``"other"``
    when it holds a letter of a non-Latin script (Cyrillic, Greek, Arabic, ...), else ``"latin"``."""
    if token.isascii():
        return [("latin", token)] if any(c.isalnum() for c in token) else []
    units: list[tuple[str, str]] = []
    run: list[str] = []
    state = {"script": "latin", "nospace": False}

    def close() -> None:
        if any(c.isalnum() for c in run):
            units.append(("nospace" if state["nospace"] else state["script"], "".join(run)))
        run.clear()
        state.update(script="latin", nospace=False)

    for char in token:
        script = _script(char) if char.isalpha() and not char.isascii() else "neutral"
        if script == "cjk":
            close()
            units.append(("cjk", char))
            continue
        if script != "neutral" and run and (script == "nospace") != state["nospace"]:
            close()
        if script == "nospace":
            state["nospace"] = True
        elif script == "other":
            state["script"] = "other"
        run.append(char)
    close()
    return units


def word_count(text: str) -> int:
    """Words as a reader (or a word processor) counts them: whitespace-separated tokens that hold a
    letter or a digit ("state-of-the-art" and "3.5" are one word each, "—" and "🙂" none), each CJK
    character one word, a run of Thai, Lao, Khmer or Myanmar one word per 5 characters."""
    count = 0
    for token in _tokens(text):
        for script, unit in _units(token):
            count += -(-len(unit) // _NO_SPACE_WORD) if script == "nospace" else 1
    return count


def too_short(text: str) -> bool:
    """Fewer than :data:`SHORT_WORDS` words: too little text to classify."""
    return word_count(text) < SHORT_WORDS


@dataclass(frozen=True)
class LanguageEvidence:
    """What the language guess reads from a text (:func:`language_evidence`)."""

    words: int  # word_count(text)
    latin_words: int  # Latin-script words with a letter (a hyphenated or elided token may give several)
    non_latin: float  # share of letter units outside the Latin script
    accented: float  # share of the Latin words with a non-ASCII letter (é, ü, ß, ą, ş, ...)
    function_words: dict[str, float]  # per language: its function words among the Latin words (shared ones split)
    distinct: dict[str, int]  # per language: how many different function words of it occur


def language_evidence(text: str) -> LanguageEvidence:
    """The counts behind :func:`language_guess`; any input (``None``, ``""``, emoji) gives zeros, never an error."""
    scores = dict.fromkeys(LANGUAGES, 0.0)
    seen: dict[str, set[str]] = {lang: set() for lang in LANGUAGES}
    latin = other = accented = words = 0
    for token in _tokens(text):
        for script, unit in _units(token):
            words += -(-len(unit) // _NO_SPACE_WORD) if script == "nospace" else 1
            if not any(c.isalpha() for c in unit):
                continue  # digits only
            if script != "latin":
                other += 1
                continue
            for word in _LETTERS.findall(unit.lower().replace("\u2019", "'")):
                if word.endswith("'") and word not in _WEIGHT:
                    word = word[:-1]  # "dogs'", "don'" (of "don't")
                latin += 1
                accented += not word.isascii()
                for lang, weight in _WEIGHT.get(word, {}).items():
                    scores[lang] += weight
                    seen[lang].add(word)
    return LanguageEvidence(
        words=words,
        latin_words=latin,
        non_latin=other / (latin + other) if latin + other else 0.0,
        accented=accented / latin if latin else 0.0,
        function_words=scores,
        distinct={lang: len(found) for lang, found in seen.items()},
    )


def language_guess(text: str) -> tuple[str, float]:
    """A light guess at a text's language: ``(code, evidence)``. Never raises; any input gives an answer.

    ``code`` is ``"en"``, ``"de"``, ``"fr"``, ``"es"``, ``"it"``, ``"pt"``, ``"nl"`` or ``"la"`` (by
    function words), ``"other"`` (mostly non-Latin letters, or many accented Latin words without a
    listed language's function words: Polish, Swedish, Turkish, ...) or ``"unknown"`` (fewer than
    :data:`MIN_WORDS_FOR_LANGUAGE` words, no letters, or no function words at all, as in a list of
    English keywords). ``evidence`` in [0, 1]: the share of the Latin words that are the language's
    function words, or for ``"other"`` the share of non-Latin letter units or of accented words;
    0 for ``"unknown"``.
    """
    e = language_evidence(text)
    if e.words < MIN_WORDS_FOR_LANGUAGE:
        return "unknown", 0.0
    if e.non_latin >= NON_LATIN_SHARE:
        return "other", round(e.non_latin, 3)
    if not e.latin_words:
        return "unknown", 0.0
    score = e.function_words
    english = score["en"]
    best = max((lang for lang in LANGUAGES if lang != "en"), key=lambda lang: score[lang])
    if (
        score[best] >= FOREIGN_MIN_WORDS
        and e.distinct[best] >= FOREIGN_MIN_DISTINCT
        and score[best] >= FOREIGN_MIN_SHARE * e.latin_words
        and score[best] > FOREIGN_OVER_ENGLISH * english
    ):
        return best, round(score[best] / e.latin_words, 3)
    if e.accented >= ACCENTED_SHARE and english < ENGLISH_DESPITE_ACCENTS * e.latin_words:
        return "other", round(e.accented, 3)
    if english > 0:
        return "en", round(english / e.latin_words, 3)
    return "unknown", 0.0


def probably_not_english(text: str) -> bool:
    """True when the guess names another language (or script); False for English, and for texts too
    short or too bare to judge (those are :func:`too_short`, or keyword lists)."""
    return language_guess(text)[0] not in ("en", "unknown")


# --- the shipped corpus of non-patent texts ------------------------------------------------------

NON_PATENT_SPLITS = ("fit", "measure")


@lru_cache(maxsize=4)
def _resource_rows(folder: str) -> tuple[dict, ...]:
    """The rows of ``resources/<folder>/texts.jsonl``, read once."""
    path = resources.files("patentclf") / "resources" / folder / "texts.jsonl"
    return tuple(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _split_rows(folder: str, split: str | None) -> list[dict]:
    if split is not None and split not in NON_PATENT_SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(NON_PATENT_SPLITS)} or None")
    return [dict(row) for row in _resource_rows(folder) if split is None or row["split"] == split]


def non_patent_texts(split: str | None = None) -> list[dict]:
    """The shipped non-patent texts (``resources/non-patent-texts/README.md``), each a dict with ``id``,
    ``kind``, ``language``, ``source``, ``split`` and ``text``; only one split's with ``split`` set
    (``"fit"`` or ``"measure"``). Returns fresh dicts, in file order."""
    return _split_rows("non-patent-texts", split)


# --- the shipped corpus of patent texts in forms other than an abstract ----------------------------

PATENT_FORMS = (
    "independent-claim",
    "claim-set",
    "description-field",
    "description-background",
    "description-summary",
    "description-detailed",
    "title-and-claim",
)


def patent_form_texts(split: str | None = None) -> list[dict]:
    """The shipped patent texts that are not abstracts (``resources/patent-forms/README.md``): claims,
    claim sets and description paragraphs, written for patentclf over the nine CPC sections, each a
    dict with ``id``, ``form`` (one of :data:`PATENT_FORMS`), ``section`` (``"A"`` .. ``"H"``, ``"Y"``),
    ``split`` and ``text``; only one split's with ``split`` set (``"fit"`` or ``"measure"``). The
    positives, beside the abstracts, of a "not patent-like" detector. Returns fresh dicts, in file order."""
    return _split_rows("patent-forms", split)
