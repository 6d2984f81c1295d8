"""The clean stage: Unicode repair, whitespace, boilerplate lines and PII, document by document.

Each document goes through these steps, in this order:

1. Mojibake repair with ftfy (`fix_mojibake`): its encoding fixes ("cafÃ©" -> "café", C1
   controls read as Windows-1252, surrogate pairs joined) and nothing else: its Unicode
   normalization is off (step 2 owns that), and so are HTML unescaping, quote uncurling,
   ligature splitting and the full-width -> ASCII mapping, which would rewrite Chinese and
   Japanese punctuation. Pure-ASCII text cannot hold mojibake and is skipped.
2. Unicode: the `unicode_form` normalization (NFC by default: composed characters, meaning
   unchanged); every line break to "\\n"; C0 and C1 control characters other than tab and
   newline removed, and so are invisible characters that only split words (zero-width space,
   word joiner, soft hyphen, byte-order mark). Zero-width (non-)joiners stay: Persian, Indic
   scripts and emoji need them.
3. Whitespace: each run of spaces or tabs (any Unicode space) inside a line becomes one space
   and trailing spaces go; a line's leading indentation stays (verse, code).
4. Books lose a Project Gutenberg header and footer that extract left (pipeline/gutenberg.py);
   web pages and articles lose their boilerplate lines (`BOILERPLATE_RULES`). Books keep every
   other line: short lines there are verse and headings, not navigation.
5. PII: e-mail addresses, public IP addresses and phone numbers become placeholders.
6. Three or more line breaks become two, so paragraphs stay apart by one blank line.

A document left empty is dropped as `empty_after_clean`; one with fewer than `min_words` words
as `too_short`. The default of 20 words only removes what cleaning emptied (a page that was all
navigation); the filter stage holds the quality thresholds (Gopher's 50 words and others).
Dropped documents keep their input text, so `rejected/` shows what was judged.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Literal

from pipeline import gutenberg
from pipeline.config import CleanConfig

NAME = "clean"
# What the output depends on besides the config: this module, pipeline/gutenberg.py (books)
# and ftfy's repairs.
CODE_VERSION = f"4+ftfy{version('ftfy')}"

# A document row in, edited in place; None to keep it, or (reason, detail) to drop it.
Cleaner = Callable[[dict, Counter[str]], tuple[str, str] | None]

if TYPE_CHECKING:
    import ftfy


@cache
def _ftfy_config() -> ftfy.TextFixerConfig:
    # ftfy is imported on first use: every textmill process imports this module
    import ftfy

    return ftfy.TextFixerConfig(
        unescape_html=False,  # trafilatura already unescaped; "&amp;" left in text is meant
        uncurl_quotes=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        fix_line_breaks=False,  # step 2
        remove_control_chars=False,  # step 2
        remove_terminal_escapes=False,  # step 2 removes their ESC; ASCII-only lines: no ftfy
        normalization=None,  # step 2, with the configured form
        explain=False,
    )


_C1_OR_SURROGATE = re.compile("[\x80-\x9f\ud800-\udfff]")
_LINE_BREAK = re.compile("\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines' set
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff]")
_BLANK_LINES = re.compile(r"\n{3,}")
_GUTENBERG = re.compile(r"project\s+gutenberg", re.IGNORECASE)
_LIST_MARKERS = "-*•·▪►> "  # trafilatura writes list items as "- item"


# ----- boilerplate lines -----


@dataclass(frozen=True)
class LineRule:
    """A kind of boilerplate line: dropped when `pattern` matches it (in lower case) and it has
    at most `max_words` words (a longer line is prose that happens to use the same words).
    `needs`: strings one of which every match contains, a cheap test that spares most lines
    the regular expression; empty for patterns anchored at the line start (fast anyway)."""

    name: str
    pattern: re.Pattern[str]
    max_words: int | None
    needs: tuple[str, ...]

    def matches(self, core: str, words: int) -> bool:
        return (
            (self.max_words is None or words <= self.max_words)
            and (not self.needs or any(map(core.__contains__, self.needs)))
            and self.pattern.search(core) is not None
        )


def _rule(
    name: str,
    max_words: int | None,
    needs: tuple[str, ...],
    at: Literal["word", "line"],
    *alternatives: str,
) -> LineRule:
    """A rule whose alternatives match where a word starts (`at="word"`) or where the line
    starts (`at="line"`). Lines are matched in lower case, which is faster than IGNORECASE."""
    anchor = {"word": r"\b", "line": "^"}[at]
    return LineRule(name, re.compile(f"{anchor}(?:{'|'.join(alternatives)})"), max_words, needs)


_SOCIAL = (
    r"facebook|twitter|linkedin|pinterest|reddit|whatsapp|telegram|email|e-mail|print|tumblr"
    r"|pocket|share|tweet|messenger|copy\s+link|flipboard|mastodon|bluesky"
)

# C4's line rules (Raffel et al. 2020, §2.2; datatrove's C4QualityFilter) drop every line that
# says "javascript" and every line with a policy phrase ("terms of use", "privacy policy",
# "cookie policy", "uses cookies", "use of cookies", "use cookies"). Those rules also drop prose
# about JavaScript, privacy or baking cookies, so here they are narrowed to the notices
# themselves and bounded by length; the navigation and share rules add the widget and menu
# leftovers that trafilatura lets through. C4's document-level rules (terminal punctuation,
# sentence count, curly braces) are the filter stage's; where C4 drops a page for "lorem ipsum",
# here the placeholder lines go and the filter stage judges what is left.
BOILERPLATE_RULES: tuple[LineRule, ...] = (
    _rule(  # "Please enable JavaScript to view the comments", "JavaScript is disabled"
        "javascript",
        30,
        ("javascript",),
        "word",
        r"(?:enable|enabling|activate|turn\s+on|switch\s+on|allow)\s+(?:your\s+)?javascript\b",
        r"javascript\s+(?:is\s+|must\s+be\s+|needs\s+to\s+be\s+|has\s+been\s+|seems\s+to\s+be\s+)?"
        r"(?:disabled|required|turned\s+off|not\s+(?:enabled|supported|available))\b",
        r"(?:browser|device)\s+(?:does\s+not|doesn't|can't|cannot)\s+support\s+javascript\b",
        r"(?:requires?|needs?)\s+javascript\s*(?:to\b|[.!]|$)",
    ),
    _rule(  # "This website uses cookies ...", "Accept all cookies", "By using this site you agree"
        "cookies",
        60,
        ("cookie", "you "),
        "word",
        r"(?:we|site|website|this\s+site|page|service|app)\s+uses?\s+cookies\b",
        r"(?:our|to\s+the)\s+use\s+of\s+cookies\b",
        r"(?:accept|allow|reject|decline|manage|customi[sz]e)\s+(?:all\s+|optional\s+)?cookies\b",
        r"cookies?\s+(?:policy|settings|preferences|consent|notice|statement|declaration)\b",
        r"by\s+(?:using|continuing|browsing|visiting)\b.{0,80}?\byou\s+(?:agree|accept|consent)\b",
    ),
    _rule(  # footer links: "Privacy Policy", "Terms of Use", "© 2024 Example. All rights reserved."
        "legal",
        10,
        ("privacy", "terms", "reserved", "copyright", "©"),
        "word",
        r"privacy\s+(?:policy|notice|statement)\b",
        r"terms\s+(?:of\s+(?:use|service)|(?:and|&)\s+conditions)\b",
        r"all\s+rights\s+reserved\b",
        r"copyright\s*(?:©\s*)?(?:19|20)\d\d\b",
        r"(?<=©)\s*(?:19|20)\d\d\b",  # "©2024" (the look-behind: "©" is no word character)
    ),
    _rule("lorem_ipsum", None, ("lorem",), "word", r"lorem\s+ipsum\b"),  # at any length
    _rule(  # share widgets: "Share this:", "Click to share on Twitter", "Facebook Twitter Email"
        "share",
        12,
        (),
        "line",
        r"(?:share|share\s+(?:this|it|on\s+\w+|via\s+\w+)(?:\s+(?:article|post|story|page|link))?"
        r"|tweet(?:\s+this)?|pin\s+it|like\s+this|like\s+loading|email\s+this(?:\s+\w+)?"
        r"|print\s+this(?:\s+\w+)?|\d+\s+shares?)\W*$",
        r"click\s+to\s+(?:share|email|print)\b",
        rf"(?:(?:{_SOCIAL}|x)\b[\W_]*){{2,}}$",  # "x" alone could be a numeral
        rf"(?:{_SOCIAL})\W*$",
    ),
    _rule(  # a whole line that is a menu item or a link: "Skip to content", "Read more »"
        "navigation",
        12,
        (),
        "line",
        r"(?:skip\s+to\s+(?:the\s+)?(?:main\s+)?(?:content|navigation|menu|search|footer)"
        r"|jump\s+to\s+(?:navigation|content|search)|(?:back|scroll|go)\s+to\s+top"
        r"|toggle\s+(?:navigation|menu)|(?:main|primary|open|close)\s+menu|menu|navigation"
        r"|search|home|read\s+more|continue\s+reading|(?:load|show|see|view)\s+more"
        r"|(?:previous|next|older|newer)\s+(?:post|article|story|page|entry|entries)s?"
        r"|log\s*in|log\s*out|sign\s*in|sign\s*up|register|subscribe|reply"
        r"|(?:leave|post)\s+a\s+(?:comment|reply)|(?:no\s+|\d+\s+)?comments?"
        r"|advertisement|sponsored(?:\s+content)?|related\s+(?:posts|articles|stories))\W*$",
        r"(?:read\s+more|related|tags?|(?:posted|filed)\s+(?:in|under))\s*:",
        r"(?:subscribe\s+to|sign\s+up\s+for)\s+(?:our|the)\s+newsletter\b",
    ),
    _rule(  # a line of three or more short links: "Home | About | Contact", "Home » News » Sport"
        "link_list",
        30,
        ("|", "•", "·", "›", "»"),
        "line",
        # Items hold no separator nor "«" (French quotes use "»"); a line starting with "|" is
        # a table row, as trafilatura writes tables.
        r"[^|•·›»«]{1,40}(?:\s[|•·›»]\s[^|•·›»«]{1,40}){2,}$",
    ),
)


class BoilerplateLines:
    """Drops the lines that any of `rules` calls boilerplate."""

    def __init__(self, rules: list[LineRule]) -> None:
        self.rules = rules

    def rule_for(self, line: str) -> str | None:
        """The name of the first rule the line is boilerplate by, or None."""
        core = line.strip().lstrip(_LIST_MARKERS).lower()
        if not core:
            return None
        words = len(core.split())
        return next((rule.name for rule in self.rules if rule.matches(core, words)), None)

    def drop(self, text: str, counts: Counter[str]) -> str:
        """The text without its boilerplate lines; counts each as `boilerplate_<rule>`."""
        kept = []
        for line in text.split("\n"):
            rule = self.rule_for(line)
            if rule is None:
                kept.append(line)
            else:
                counts[f"boilerplate_{rule}"] += 1
                counts["lines_dropped_boilerplate"] += 1
        return "\n".join(kept)


# ----- PII -----
# Every pattern starts only where a token starts (the look-behinds) and bounds its repeats, so
# a scan stays linear in the text's length, whatever the text.

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}\b")
_IPV4 = re.compile(r"(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])")
_VERSION_BEFORE = re.compile(r"\b(?:version|ver|release|build|v)\.?\s*$", re.IGNORECASE)
# Digit groups with one separator between them, after an optional +CC and (area code).
_PHONE = re.compile(
    r"(?<![\w.,/+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,8}(?:[ .-]\d{1,8}){0,6}"
    r"(?![\w.,/-]?\d)"
)
_DIGITS = re.compile(r"\d+")
_NANP_LEADS = "23456789"  # North-American area codes and exchanges never start with 0 or 1


def _public_ip_length(match: re.Match[str]) -> int:
    """The whole match if it is a public address (not private, loopback, link-local,
    documentation or otherwise reserved) and not a version number ("version 1.2.3.4")."""
    try:
        address = ipaddress.ip_address(match.group())
    except ValueError:  # "12:30:45", "999.1.1.1"
        return 0
    before = match.string[max(0, match.start() - 10) : match.start()]
    if not address.is_global or _VERSION_BEFORE.search(before):
        return 0
    return len(match.group())


def is_phone_number(number: str) -> bool:
    """Whether digit groups (as `_PHONE` finds them) are a phone number:
    - international: "+" and a country code, 8 to 15 digits in all (E.164's maximum);
    - North-American: (optional 1) 3-3-4 digits, "415-555-0132", "(415) 555-0132";
    - national with a trunk 0, as in most of Europe: 9 to 12 digits in groups of two or more,
      "030 1234567", "020 7946 0958", "06 12 34 56 78".
    Other than after "(area code)", one kind of separator throughout, which is what tells a
    number from dates, years, prices and versions ("05.12.2023 10", "1999 2000", "0-306-40615-7"
    has one-digit groups)."""
    groups = _DIGITS.findall(number)
    digits = sum(len(group) for group in groups)
    if number.startswith("+"):
        return 8 <= digits <= 15
    after_area_code = number.partition(")")[2].lstrip(" .-") if "(" in number else number
    if len({char for char in after_area_code if char in " .-"}) > 1:
        return False
    if len(groups) == 4 and groups[0] == "1":  # "1-800-555-0199"
        groups = groups[1:]
    if [len(group) for group in groups] == [3, 3, 4]:
        return groups[0][0] in _NANP_LEADS and groups[1][0] in _NANP_LEADS
    return (
        number.lstrip("(").startswith("0")
        and 9 <= digits <= 12
        and len(groups) >= 2
        and all(len(group) >= 2 for group in groups)
    )


def _phone_length(match: re.Match[str]) -> int:
    """Length of the longest phone number at the start of the match ("415-555-0132 24 hours"
    has one before " 24"), or 0."""
    candidate = match.group()
    groups = list(_DIGITS.finditer(candidate))
    if sum(len(group.group()) for group in groups) < 8:  # no phone form has fewer digits
        return 0
    for group in reversed(groups):
        if is_phone_number(candidate[: group.end()]):
            return group.end()
    return 0


@dataclass(frozen=True)
class PiiRule:
    """A kind of PII: `pattern` finds candidates, `length` says how much of one is PII (0:
    none of it), and that part becomes `placeholder`; counted as `pii_<kind>`."""

    kind: str
    pattern: re.Pattern[str]
    length: Callable[[re.Match[str]], int]
    placeholder: str
    needs: str = ""  # a text without it has none of this kind (a quick test)

    def scrub(self, text: str) -> tuple[str, int]:
        """The text with this kind of PII replaced, and how many were."""
        if self.needs not in text:
            return text, 0
        replaced = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal replaced
            found = self.length(match)
            if not found:
                return match.group()
            replaced += 1
            return self.placeholder + match.group()[found:]

        return self.pattern.sub(replace, text), replaced


def _pii_rules(cfg: CleanConfig) -> list[PiiRule]:
    """E-mail first (its domain may look like a number), then IPs, then phone numbers (a
    private IP address must not pass for one: "192.168.1.1" has no phone shape)."""
    rules = []
    if cfg.scrub_email:
        rules.append(
            PiiRule("email", _EMAIL, lambda m: len(m.group()), cfg.email_placeholder, needs="@")
        )
    if cfg.scrub_ip:
        rules.append(PiiRule("ip", _IPV4, _public_ip_length, cfg.ip_placeholder))
        rules.append(PiiRule("ip", _IPV6, _public_ip_length, cfg.ip_placeholder, needs=":"))
    if cfg.scrub_phone:
        rules.append(PiiRule("phone", _PHONE, _phone_length, cfg.phone_placeholder))
    return rules


# ----- Unicode and whitespace -----


def fix_mojibake(text: str) -> str:
    """Step 1: ftfy, line by line as it works, where it may change something: with
    `_ftfy_config()`, that is text its own mojibake detector flags or that holds C1 controls or
    surrogates, and never a pure-ASCII line. The test first spares clean text ftfy's slower
    line-by-line pass."""
    import ftfy.badness

    if not (ftfy.badness.is_bad(text) or _C1_OR_SURROGATE.search(text)):
        return text
    config = _ftfy_config()
    return "\n".join(
        line if line.isascii() else ftfy.fix_text(line, config) for line in text.split("\n")
    )


def normalize_unicode(text: str, form: str | None) -> str:
    """Step 2: line breaks, control and invisible characters, then the normalization form."""
    text = _INVISIBLE.sub("", _LINE_BREAK.sub("\n", text))
    return unicodedata.normalize(form, text) if form else text


def tidy_spaces(text: str) -> str:
    """Step 3: one space between words, none at line ends; indentation kept."""
    return "\n".join(_tidy_line(line) for line in text.split("\n"))


def _tidy_line(line: str) -> str:
    words = line.split()  # split() splits at any run of Unicode spaces
    if not words:
        return ""
    indent = line[: len(line) - len(line.lstrip())]
    return indent + " ".join(words)


# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Japanese kana, CJK.
_UNSPACED_LETTER = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
)


def count_words(text: str) -> int:
    """Whitespace-separated words, plus one per letter of the scripts written without spaces,
    so that a Chinese or Thai article is not "one word" long."""
    return len(text.split()) + len(_UNSPACED_LETTER.findall(text))


# ----- one document -----


def prepare(cfg: CleanConfig) -> Cleaner:
    """The cleaning function for one document row, with its rules compiled once."""
    line_rules = [rule for rule in BOILERPLATE_RULES if rule.name not in cfg.boilerplate_skip]
    boilerplate = BoilerplateLines(line_rules) if cfg.boilerplate and line_rules else None
    pii_rules = _pii_rules(cfg)

    def clean(row: dict, counts: Counter[str]) -> tuple[str, str] | None:
        text = row["text"] or ""
        counts["chars_in"] += len(text)
        flags = list(row.get("flags") or [])
        if cfg.fix_mojibake and not text.isascii():
            fixed = fix_mojibake(text)
            if fixed != text:
                counts["mojibake_fixed"] += 1
                flags.append("mojibake_fixed")
                text = fixed
        text = tidy_spaces(normalize_unicode(text, cfg.unicode_form))
        if row.get("source_kind") == "book":
            if _GUTENBERG.search(text):
                text, found = gutenberg.strip_boilerplate(text)
                if found == "markers":
                    counts["gutenberg_stripped"] += 1
        elif boilerplate:
            text = boilerplate.drop(text, counts)
        scrubbed = 0
        for rule in pii_rules:
            text, replaced = rule.scrub(text)
            if replaced:
                counts[f"pii_{rule.kind}"] += replaced
                scrubbed += replaced
        if scrubbed:
            flags.append("pii_scrubbed")
        text = _BLANK_LINES.sub("\n\n", text).strip()

        if not text:
            return "empty_after_clean", f"nothing left of {len(row['text'] or '')} chars"
        words = count_words(text)
        if words < cfg.min_words:
            return "too_short", f"{words} words < {cfg.min_words}"
        row["text"] = text
        row["flags"] = flags or None
        counts["chars_out"] += len(text)
        return None

    return clean
