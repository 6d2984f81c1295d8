"""The character encoding of an HTML page, decided as the HTML standard decides it (WHATWG HTML,
13.2.3 "Determining the character encoding"), so that the crawler reads links as a browser
reads them (extract shares its labels and byte-order marks, in an order of its own):

1. a byte-order mark (UTF-8, UTF-16LE, UTF-16BE) wins over everything;
2. the charset of the Content-Type header;
3. the prescan: `<meta charset>` or `<meta http-equiv="Content-Type" content="...charset=...">`
   in the first 1,024 bytes (a UTF-16 label there means UTF-8, as the standard says);
4. detection: UTF-8 when the bytes are valid UTF-8, else charset_normalizer's guess, else
   windows-1252 (the standard's default for most locales).

Labels are read as the WHATWG Encoding Standard reads them where Python differs: latin-1,
ISO-8859-1 and ASCII mean windows-1252. A label Python does not know is passed over.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

PRESCAN_BYTES = 1024  # the HTML standard's prescan window
DETECT_BYTES = 64 * 1024  # enough text for charset_normalizer to guess from
FALLBACK = "cp1252"
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_META = re.compile(rb"<meta[\s/][^>]*>", re.I)
_ATTRIBUTE = re.compile(rb"""([a-z-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.I)
_CHARSET_IN_CONTENT = re.compile(rb"""charset\s*=\s*["']?\s*([^\s"';]+)""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def codec(label: str | None) -> str | None:
    """The Python codec for a charset label (WHATWG readings of latin-1 and ASCII), or None
    when the label is empty or unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return FALLBACK if name in ("latin-1", "iso8859-1", "ascii") else name


def html_encoding(body: bytes, declared: str | None = None) -> tuple[str, int]:
    """(codec, bytes of byte-order mark to skip) for an HTML page whose Content-Type header
    declares the charset `declared` (None: none)."""
    for bom, name in BOMS:
        if body.startswith(bom):
            return name, len(bom)
    name = codec(declared) or _prescan(body[:PRESCAN_BYTES])
    return name or _detect(body), 0


def decode_html(body: bytes, declared: str | None = None) -> str:
    """The page as text, in the encoding `html_encoding` decides (undecodable bytes replaced),
    without an XML declaration (lxml refuses text that declares an encoding)."""
    name, skip = html_encoding(body, declared)
    return _XML_DECLARATION.sub("", body[skip:].decode(name, errors="replace"), count=1)


def _prescan(head: bytes) -> str | None:
    """The charset a `<meta>` in the page's start declares, as the standard's prescan reads it."""
    for tag in _META.finditer(_COMMENT.sub(b"", head)):
        attributes = {
            name.lower(): value.strip(b"\"'") for name, value in _ATTRIBUTE.findall(tag.group(0))
        }
        label = attributes.get(b"charset")
        if label is None and attributes.get(b"http-equiv", b"").lower() == b"content-type":
            found = _CHARSET_IN_CONTENT.search(attributes.get(b"content", b""))
            label = found.group(1) if found else None
        name = codec(label.decode("ascii", errors="replace")) if label else None
        if name:
            return "utf-8" if name.startswith("utf-16") else name
    return None


def _detect(body: bytes) -> str:
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    guess = from_bytes(body[:DETECT_BYTES]).best()
    return codec(guess.encoding if guess else None) or FALLBACK
