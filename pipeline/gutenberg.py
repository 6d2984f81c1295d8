"""Project Gutenberg's license header and footer, removed from a book's plain text.

The markers are the lists of the well-known Gutenberg cleaning tools: `TEXT_START_MARKERS`
(53 entries), `TEXT_END_MARKERS` (26), `LEGALESE_START_MARKERS` and `LEGALESE_END_MARKERS`
(1 each) of c-w/gutenberg, `gutenberg/_domain_model/text.py` (PyPI `gutenberg` 0.8.2, itself a
port of Johannes Krugel's `strip_headers.cpp`); pgcorpus/gutenberg's `src/cleanup.py` and PyPI
`gutenberg-cleaner` 0.1.6 copy the same lists. They are written out below in their original
spellings, sorted by what the line is, plus a few of ours (`OUR_*`) for variants seen since.

How they are matched: at the start of a line, case-insensitively, after any spaces and
asterisks, with any run of spaces and asterisks (or one line break) between the words, so that
`*END*THE SMALL PRINT!`, `*END THE SMALL PRINT!` and `**END THE SMALL PRINT!` are one marker
and a marker split over two lines is still found.

What goes:
1. The header: everything up to the first `HEADER_ENDS` line (START OF THE PROJECT GUTENBERG,
   END THE SMALL PRINT) in the first half of the text. When that line opens with asterisks but
   does not close them, its tail on the next line ("PROMETHEUS***") goes too.
2. The footer: everything from the first `FOOTER_STARTS` line after the header. The weaker
   `FOOTER_HINTS` ("by Project Gutenberg", which also occur in headers) count only 100 lines or
   more into the book (Krugel's rule), and only when all that follows them up to the footer
   (or the end) is boilerplate.
3. Around the book: leading paragraphs that hold a `HEADER_LINES` line, open with a
   `CREDIT_OPENINGS` phrase ("Produced by") or are license text, and trailing license
   paragraphs. A file with no START marker whose first paragraph is Gutenberg's loses its
   whole leading run of license, catalogue ("Title: …") and credit paragraphs.
4. Inside it: license paragraphs and the `LEGALESE` blocks of the World Library editions.

What stays: everything else. A transcriber's note that mentions Project Gutenberg is the
book's, not the license. A marker the lists do not know leaves its boilerplate in; a guess
could cut the book. A text with no marker at all comes back whole and flagged.
"""

from __future__ import annotations

import re
from pathlib import Path

# ----- the marker lists (c-w/gutenberg 0.8.2, sorted by role) -----

# TEXT_START_MARKERS that end the license header: the book starts on the next line.
HEADER_ENDS = (
    "*END*THE SMALL PRINT",
    "*END THE SMALL PRINT",
    "*** START OF THE PROJECT GUTENBERG",
    "*** START OF THIS PROJECT GUTENBERG",
    " *** START OF THIS PROJECT GUTENBERG",
    "***START OF THE PROJECT GUTENBERG",
    "*** START OF THE COPYRIGHTED",
)
# TEXT_START_MARKERS that are lines of a header, of its small print, or of the producers'
# credits that follow it. Krugel drops everything up to the last of them in the first 600
# lines; here only a paragraph with one goes, and only while every paragraph before it went.
HEADER_LINES = (
    "The Project Gutenberg",
    "**The Project Gutenberg",
    "Beginning of this Project Gutenberg",
    "Project Gutenberg TEI",
    "Project Runeberg publishes",
    "http://gutenberg.spiegel.de/ erreichbar.",
    "http://gutenberg2000.de erreichbar.",
    "*SMALL PRINT!",
    "****     SMALL PRINT!",
    '["Small Print" V.',
    "More information about this book is at the top of this file.",
    "tells you about restrictions in how the file may be used.",
    "*****These eBooks Were Prepared By Thousands of Volunteers!*****",
    "We need your donations more than ever!",
    "      (http://www.ibiblio.org/gutenberg/",
    "                this Project Gutenberg edition.",
    "This etext was prepared by",
    "This Etext was prepared by",
    "This etext was produced by",
    "This eBook was prepared by",
    "This Project Gutenberg Etext was prepared by",
    "E-text prepared by",
    "Distributed Proofreading Team",
    "Proofreading Team at http://www.pgdp.net",
    "http://www.pgdp.net",
    "Project Gutenberg Online Distributed",
    "Gutenberg Online Distributed",
    "the Project Gutenberg Online Distributed",
    "the Project Gutenberg Online Distributed Proofreading Team",
    "and the Project Gutenberg Online Distributed Proofreading Team",
    "Mary Meehan, and the Project Gutenberg Online Distributed Proofreading",
    "Gutenberg Distributed Proofreaders",
    "Project Gutenberg Distributed Proofreaders",
    "http://gallica.bnf.fr)",
    "l'authorization à les utilizer pour preparer ce texte.",
    "of the etext through OCR.",
    "      http://archive.org/details/",
    "by The Internet Archive)",
    "by The Internet Archive/Canadian Libraries",
    "by The Internet Archive/American Libraries",
    "public domain material from the Internet Archive",
    "Internet Archive)",
    "Internet Archive/Canadian Libraries",
    "Internet Archive/American Libraries",
    "material from the Google Print project",
)
# The TEXT_START_MARKER whose words a book may use too: it counts at a paragraph's start only.
CREDIT_OPENINGS = ("Produced by",)
# TEXT_END_MARKERS that only a footer starts with.
FOOTER_STARTS = (
    "*** END OF THE PROJECT GUTENBERG",
    "*** END OF THIS PROJECT GUTENBERG",
    " *** END OF THIS PROJECT GUTENBERG",
    "***END OF THE PROJECT GUTENBERG",
    "        ***END OF THE PROJECT GUTENBERG",
    "END OF PROJECT GUTENBERG",
    "End of the Project Gutenberg",
    " End of the Project Gutenberg",
    "End of The Project Gutenberg",
    "End of Project Gutenberg",
    "End of this Project Gutenberg",
    "*** END OF THE COPYRIGHTED",
    "End of this is COPYRIGHTED",
    "Ende dieses Project Gutenberg",
    "Ende dieses Projekt Gutenberg",
    "Ende dieses Project Gutenber",
    "Ende diese Project Gutenberg",
    "Ende dieses Etextes ",
    "Fin de Project Gutenberg",
    "Ce document fut presente en lecture",
    "Ce document fut présenté en lecture",
)
# TEXT_END_MARKERS that headers use too: a footer only 100 lines or more into the book.
FOOTER_HINTS = (
    "by Project Gutenberg",
    "The Project Gutenberg Etext of ",
    "**This is a COPYRIGHTED Project Gutenberg Etext, Details Above**",
    "More information about this book is at the top of this file.",
    "We need your donations more than ever!",
)
# LEGALESE_START_MARKERS / LEGALESE_END_MARKERS: a notice inside the World Library texts.
LEGALESE = ("<<THIS ELECTRONIC VERSION OF", "SERVICE THAT CHARGES FOR DOWNLOAD")

# Ours: the small print's "**END THE SMALL PRINT!" is the lists' "*END THE SMALL PRINT" once
# asterisks are tolerated; credits the old stripper knew; the full license and the small print
# standing at the end of a book with no "End of" line.
OUR_HEADER_LINES = ("Etext prepared by",)
OUR_CREDIT_OPENINGS = ("Transcribed by", "Transcribed from")
OUR_FOOTER_STARTS = ("*** START: FULL LICENSE ***",)
OUR_FOOTER_HINTS = ("***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN", "*SMALL PRINT!")

START_MARKERS = HEADER_ENDS + HEADER_LINES + CREDIT_OPENINGS  # the lists' 53 start markers
END_MARKERS = FOOTER_STARTS + FOOTER_HINTS  # the lists' 26 end markers

# Krugel's rule for the markers a header may hold too.
_HINT_MIN_LINES = 100

# Phrases of the license, header and small print themselves, not of a note about them.
_LICENSE = re.compile(
    r"project\s+gutenberg(?:-tm|\s+licen[cs]e|\s+literary\s+archive)"
    r"|project\s+gutenberg(?:'s)?\s+(?:e-?books?|e-?texts?)\s+(?:of|is|#)"
    r"|small\s+print!|legal\s+small\s+print|gutenberg\.(?:org|net)/license"
    r"|full\s+project\s+gutenberg\s+licen|start:\s*full\s+licen"
    r"|this\s+e-?book\s+is\s+for\s+the\s+use\s+of\s+anyone"
    r"|this\s+(?:file|e-?book|e-?text)\s+should\s+be\s+named"
    r"|readable\s+by\s+both\s+humans|plain\s+vanilla\s+electronic\s+texts"
    r"|prepared\s+by\s+(?:hundreds|thousands)\s+of\s+volunteers"
    r"|we\s+need\s+your\s+donations|copyright\s+laws\s+are\s+changing"
    r"|information\s+(?:on|about)\s+(?:contacting\s+)?project\s+gutenberg",
    re.IGNORECASE,
)
# Words of a header block before the book in a file with no START marker; used only on a
# leading run that starts with Gutenberg's own paragraph.
_HEADER_WORDS = re.compile(
    r"gutenberg|\be-?texts?\b|\be-?books?\b|copyright|donat|this\s+(?:file|header)"
    r"|warrant|liabilit|disclaim|royalt|trademark|licen[cs]e|ibiblio|\bftp\b|volunteer"
    r"|electronic\s+(?:texts?|path|version)",
    re.IGNORECASE,
)
# A catalogue paragraph: fields of the header ("Title: …", "[EBook #84]"), a field's
# indented second line.
_CATALOGUE_FIELD = re.compile(
    r"\s*(?:(?:title|author|editor|translator|illustrator|release\s+date|posting\s+date"
    r"|first\s+posted|last\s+updated|language|character\s+set\s+encoding|edition)\s*:"
    r"|\[(?:e-?book|e-?text)\s+#|\[most\s+recently\s+updated|\[this\s+file\s+was)",
    re.IGNORECASE,
)
# Words one of which every `_LICENSE` phrase and strong marker holds: a paragraph without any
# is not searched (the expressions are slow over a whole book).
LICENSE_WORDS = (
    "gutenber", "small", "licen", "copyright", "etextes", "document", "anyone", "named",
    "humans", "vanilla", "volunteers", "donations",
)  # fmt: skip
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _marker_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One expression for the phrases: at a line start after spaces and asterisks, with spaces,
    asterisks or one line break between the words."""
    separator = r"(?:[ \t*]+\n?|\n)[ \t*]*"
    words = (separator.join(map(re.escape, phrase.split())) for phrase in phrases)
    return re.compile(
        r"^[ \t*]*(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")",
        re.IGNORECASE | re.MULTILINE,
    )


_HEADER_END = _marker_pattern(HEADER_ENDS)
_HEADER_LINE = _marker_pattern(HEADER_LINES + OUR_HEADER_LINES + HEADER_ENDS)
_CREDIT_OPENING = _marker_pattern(CREDIT_OPENINGS + OUR_CREDIT_OPENINGS)
_FOOTER_START = _marker_pattern(FOOTER_STARTS + OUR_FOOTER_STARTS)
_FOOTER_HINT = _marker_pattern(FOOTER_HINTS + OUR_FOOTER_HINTS)
# Inside a book only the markers that nothing but Gutenberg's own lines start with count.
_STRONG_MARKER = _marker_pattern(HEADER_ENDS + FOOTER_STARTS + OUR_FOOTER_STARTS)
_LEGALESE_START, _LEGALESE_END = (_marker_pattern((phrase,)) for phrase in LEGALESE)


def read_book_file(path: Path) -> str:
    """A plain-text book file as Gutenberg's collection has them: UTF-8 (a BOM is dropped),
    else ISO-8859-1."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def strip_boilerplate(text: str) -> tuple[str, str]:
    """(the book's own text, what was found): "markers" when Gutenberg's header or footer was
    found and removed, or "no_markers" (the text unchanged but for its line ends)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = _header_end(text)
    end = _footer_start(text, start)
    paragraphs = _paragraphs(_without_legalese(text[start:end]))
    kept = _book_paragraphs(paragraphs, after_marker=start > 0)
    if start == 0 and end == len(text) and len(kept) == len(paragraphs):
        return text.strip(), "no_markers"
    return "\n\n".join(p.strip("\n") for p in kept), "markers"


def license_text(text: str) -> list[str]:
    """The lines of `text` that are Gutenberg's markers or license, for tests and reports: a
    mention of Project Gutenberg in a transcriber's note is not among them."""
    return [
        line
        for line in text.splitlines()
        if _LICENSE.search(line) or _HEADER_END.match(line) or _FOOTER_START.match(line)
    ]


def _header_end(text: str) -> int:
    """Where the book starts after the first header-ending marker, 0 without one. Only the
    first half is searched: a small print at the end of a book must not cut it whole."""
    marker = _HEADER_END.search(text, 0, len(text) // 2)
    if not marker:
        return 0
    line_start = text.rfind("\n", 0, marker.start()) + 1
    end = _line_end(text, marker.end())
    opened = text[line_start:end].lstrip().startswith("*")
    if opened and not text[line_start:end].rstrip().endswith("*"):
        # "*** START OF THE PROJECT GUTENBERG EBOOK THE PRISON OF\nPROMETHEUS***"
        tail_end = _line_end(text, end + 1)
        tail = text[end + 1 : tail_end].strip()
        if tail.endswith("*") and 0 < len(tail.split()) <= 8:
            end = tail_end
    return end


def _footer_start(text: str, start: int) -> int:
    """Where the footer starts after `start`, the text's length without one. A weaker marker
    ends the book before a stronger one only when everything between them is boilerplate."""
    marker = _FOOTER_START.search(text, start)
    end = marker.start() if marker else len(text)
    after_lines = start
    for _ in range(_HINT_MIN_LINES):
        after_lines = text.find("\n", after_lines) + 1
        if not after_lines:
            return end
    hint = _FOOTER_HINT.search(text, after_lines, end)
    if hint and all(map(_is_header_like, _paragraphs(text[hint.start() : end]))):
        return hint.start()
    return end


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end < 0 else end


def _without_legalese(text: str) -> str:
    """The text without its "<<THIS ELECTRONIC VERSION OF …>>" notices (20 lines at most; one
    with no end marker stays)."""
    while (notice := _LEGALESE_START.search(text)) and (
        close := _LEGALESE_END.search(text, notice.end())
    ):
        close_end = _line_end(text, close.end())
        if text.count("\n", notice.start(), close_end) > 20:
            break
        text = text[: notice.start()] + text[close_end + 1 :]
    return text


def _paragraphs(text: str) -> list[str]:
    return [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def _book_paragraphs(paragraphs: list[str], after_marker: bool) -> list[str]:
    """The paragraphs between header and footer without the leading credits and license, the
    trailing license and any license paragraph inside."""
    first = 0
    if after_marker:
        while first < len(paragraphs) and _is_credit_or_license(paragraphs[first]):
            first += 1
    elif paragraphs and _is_credit_or_license(paragraphs[0]):
        # a file with no START marker: its header is the run of header-like paragraphs
        while first < len(paragraphs) and _is_header_like(paragraphs[first]):
            first += 1
    last = len(paragraphs)
    while last > first and _is_license(paragraphs[last - 1]):
        last -= 1
    return [p for p in paragraphs[first:last] if not _is_license(p)]


def _is_license(paragraph: str) -> bool:
    lower = paragraph.lower()
    if not any(word in lower for word in LICENSE_WORDS):
        return False
    return bool(_LICENSE.search(paragraph) or _STRONG_MARKER.search(paragraph))


def _is_credit_or_license(paragraph: str) -> bool:
    credit = _CREDIT_OPENING.match(paragraph.lstrip("\n")) or _HEADER_LINE.search(paragraph)
    return bool(credit) or _is_license(paragraph)


def _is_header_like(paragraph: str) -> bool:
    lines = paragraph.strip("\n").split("\n")
    catalogue = bool(_CATALOGUE_FIELD.match(lines[0])) and all(
        _CATALOGUE_FIELD.match(line) or line[:1].isspace() for line in lines[1:]
    )
    return catalogue or _is_credit_or_license(paragraph) or bool(_HEADER_WORDS.search(paragraph))
