"""Project Gutenberg's license header and footer, removed from a book's plain text.

The markers in use over the years: the modern `*** START OF THE/THIS PROJECT GUTENBERG EBOOK
… ***` / `*** END OF …` family (with or without spaces inside the asterisks), the legacy
"SMALL PRINT" header that ends in `*END*`, and the "End of (the) Project Gutenberg …" line
before the footer. After the header, the "Produced by …" credit paragraph goes too, and so does
any later paragraph that speaks of Project Gutenberg (transcriber's notes). A text with no
marker at all is kept whole and flagged: guessing would cut the book.
"""

from __future__ import annotations

import re
from pathlib import Path

_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG.*$"
    r"|^.*\*END\*[ \t]*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG.*$"
    r"|^[ \t]*End of (?:the )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE,
)
_CREDIT = re.compile(
    r"^(?:Produced by|E-?text prepared by|Transcribed (?:by|from))\b", re.IGNORECASE
)
_MENTION = re.compile(r"Project\s+Gutenberg", re.IGNORECASE)


def read_book_file(path: Path) -> str:
    """A plain-text book file as Gutenberg's collection has them: UTF-8 (a BOM is dropped),
    else ISO-8859-1."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def strip_boilerplate(text: str) -> tuple[str, str]:
    """(the book's own text, what was found): "markers", or "no_markers" (text unchanged)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    if not start and not end:
        return text.strip(), "no_markers"
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", body) if p.strip()]
    while paragraphs and _CREDIT.match(paragraphs[0].strip()):
        paragraphs.pop(0)  # the credits just after the header
    kept = [p if not _MENTION.search(p) else _without_mentions(p) for p in paragraphs]
    return "\n\n".join(p.strip("\n") for p in kept if p.strip()), "markers"


def _without_mentions(paragraph: str) -> str:
    """A transcriber's note about Project Gutenberg: drop it. A note in brackets on one line
    inside other text ("[Note Project Gutenberg: …]"): drop that line only."""
    lines = paragraph.split("\n")
    notes = [line for line in lines if _MENTION.search(line)]  # empty when split across lines
    if notes and all(line.strip().startswith("[") and line.strip().endswith("]") for line in notes):
        return "\n".join(line for line in lines if line not in notes)
    return ""
