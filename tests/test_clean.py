"""The clean stage's per-document logic: Unicode, whitespace, boilerplate lines, PII, books."""

from __future__ import annotations

import time
import typing
import unicodedata
from collections import Counter

import pytest
from pydantic import ValidationError

from pipeline.clean import BOILERPLATE_RULES, prepare
from pipeline.config import CleanConfig
from tests.conftest import SHARED_DATA, needs_shared_data

PROSE = (
    "The town council met on Tuesday evening to discuss the new bridge over the river, "
    "and after a long debate the members agreed to ask the engineers for a second opinion."
)


def clean(text: str, kind: str = "web", **settings) -> tuple[dict, tuple | None, Counter]:
    """(the row after cleaning, the drop decision, the tallies)."""
    row = {
        "id": "d1",
        "text": text,
        "source_kind": kind,
        "url": "https://example.org/",
        "flags": None,
    }
    counts: Counter[str] = Counter()
    decision = prepare(CleanConfig(**{"min_words": 0, **settings}))(row, counts)
    return row, decision, counts


# ----- Unicode -----


def test_mojibake_is_repaired_counted_and_flagged():
    french = "L’été dernier, nous sommes allés à Montréal — c’était magnifique."
    broken = french.encode("utf-8").decode("windows-1252")  # "Lâ€™Ã©tÃ© dernier, ..."
    row, decision, counts = clean(f"cafÃ© dÃ©jÃ  vu\n\n{broken}")
    assert decision is None
    assert row["text"] == f"café déjà vu\n\n{french}"
    assert counts["mojibake_fixed"] == 1
    assert row["flags"] == ["mojibake_fixed"]


def test_correct_text_is_not_repaired():
    text = "naïve café — «déjà vu», Straße, 10 € and “curly quotes” stay as written"
    row, _, counts = clean(text)
    assert row["text"] == text
    assert "mojibake_fixed" not in counts and row["flags"] is None


def test_mojibake_repair_can_be_turned_off():
    row, _, _ = clean("cafÃ©", fix_mojibake=False)
    assert row["text"] == "cafÃ©"


def test_text_is_nfc_normalized_unless_configured_otherwise():
    decomposed = "Cafe\u0301 cre\u0300me"
    row, _, _ = clean(decomposed)
    assert row["text"] == "Café crème" and unicodedata.is_normalized("NFC", row["text"])
    row, _, _ = clean(decomposed, unicode_form=None)
    assert row["text"] == decomposed
    row, _, _ = clean("ﬁne 10³", unicode_form="NFKC")
    assert row["text"] == "fine 103"


def test_control_and_invisible_characters_go_line_breaks_stay():
    text = (
        "Null\x00 and bell\x07 and\x1b escape\r\nzero\u200bwidth soft\u00adhyphen\ufeff\u2028next"
    )
    row, _, _ = clean(text)
    assert row["text"] == "Null and bell and escape\nzerowidth softhyphen\nnext"


def test_zero_width_joiners_stay():
    persian = "من می\u200cخواهم کتاب بخوانم"  # the ZWNJ is part of how the word is spelt
    row, _, _ = clean(persian)
    assert row["text"] == persian


def test_whitespace_is_tidied_and_paragraphs_kept():
    text = (
        "  First   line\twith\u00a0\u00a0tabs   \nsecond line  \n\n\n\n\nNew paragraph.   \n\n \n"
    )
    row, _, _ = clean(text)
    # leading indentation of the first line goes with the document's outer whitespace only
    assert row["text"] == "First line with tabs\nsecond line\n\nNew paragraph."
    row, _, _ = clean("Verse:\n    indented line\n        deeper", kind="book")
    assert row["text"] == "Verse:\n    indented line\n        deeper"


# ----- boilerplate lines -----

PAGE = """Skip to content
Home | About | Contact
Home » News » Local
The town council met on Tuesday to discuss the new bridge.
Please enable JavaScript to view the comments powered by Disqus.
JavaScript was created by Brendan Eich at Netscape in 1995 and every browser now runs it.
This website uses cookies to improve your experience. Accept all cookies
Grandma's recipe uses cookies crumbled into the base of the cheesecake.
By continuing to browse this site, you agree to our use of cookies.
The company changed its privacy policy after regulators in Brussels opened an inquiry.
Privacy Policy
© 2024 Example Ltd. All rights reserved.
Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.

Share this:
- Facebook
- Twitter
Facebook X Pinterest Email
Click to share on Twitter (Opens in new window)
Share this recipe with your friends who love baking, it is easy to make.
Read more
Read more about the history of the town in our archive.
Previous post
Tags: politics, economy
| Name | Age | City |
|---|---|---|
| Ann | 31 | Paris |
Il a dit « oui » puis « non » et « peut-être » enfin.
Like this:
Like Loading..."""

KEPT = """The town council met on Tuesday to discuss the new bridge.
JavaScript was created by Brendan Eich at Netscape in 1995 and every browser now runs it.
Grandma's recipe uses cookies crumbled into the base of the cheesecake.
The company changed its privacy policy after regulators in Brussels opened an inquiry.

Share this recipe with your friends who love baking, it is easy to make.
Read more about the history of the town in our archive.
| Name | Age | City |
|---|---|---|
| Ann | 31 | Paris |
Il a dit « oui » puis « non » et « peut-être » enfin."""


def test_boilerplate_lines_go_and_similar_prose_stays():
    row, decision, counts = clean(PAGE)
    assert decision is None
    assert row["text"] == KEPT
    assert counts["lines_dropped_boilerplate"] == 19
    assert {name: counts[f"boilerplate_{name}"] for name in ("javascript", "cookies", "legal")} == {
        "javascript": 1,
        "cookies": 2,
        "legal": 2,
    }
    assert counts["boilerplate_lorem_ipsum"] == 1
    assert counts["boilerplate_link_list"] == 2


def test_boilerplate_rules_can_be_skipped_or_turned_off():
    row, _, _ = clean(PAGE, boilerplate_skip=["cookies", "navigation"])
    assert "This website uses cookies" in row["text"] and "Skip to content" in row["text"]
    assert "Privacy Policy" not in row["text"]
    row, _, counts = clean(PAGE, boilerplate=False)
    assert row["text"] == PAGE and "lines_dropped_boilerplate" not in counts


def test_config_names_exactly_the_rules_there_are():
    (skip_type,) = typing.get_args(CleanConfig.model_fields["boilerplate_skip"].annotation)
    assert set(typing.get_args(skip_type)) == {rule.name for rule in BOILERPLATE_RULES}
    with pytest.raises(ValidationError, match="boilerplate_skip"):
        CleanConfig(boilerplate_skip=["cookie"])


# ----- PII -----


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("Write to jane.doe+news@mail.example.co.uk today.", "Write to <EMAIL> today.", "email"),
        ("Contact: Ünal_99@example.org.", "Contact: <EMAIL>.", "email"),
        ("The server 8.8.8.8 answered.", "The server <IP_ADDRESS> answered.", "ip"),
        ("Seen from 2001:4860:4860::8888 twice", "Seen from <IP_ADDRESS> twice", "ip"),
        ("Call +44 20 7946 0958 now", "Call <PHONE_NUMBER> now", "phone"),
        ("Tel. +49 (0)30 1234567.", "Tel. <PHONE_NUMBER>.", "phone"),
        ("Appelez le +33 6 12 34 56 78.", "Appelez le <PHONE_NUMBER>.", "phone"),
        ("Call (415) 555-0132 today", "Call <PHONE_NUMBER> today", "phone"),
        ("Call 415-555-0132 24 hours a day", "Call <PHONE_NUMBER> 24 hours a day", "phone"),
        ("Toll free 1-800-555-0199.", "Toll free <PHONE_NUMBER>.", "phone"),
        (
            "Berlin 030 1234567, London 020 7946 0958",
            "Berlin <PHONE_NUMBER>, London <PHONE_NUMBER>",
            "phone",
        ),
        (
            "Paris 06 12 34 56 78 ou 01.42.68.53.00",
            "Paris <PHONE_NUMBER> ou <PHONE_NUMBER>",
            "phone",
        ),
    ],
)
def test_pii_is_replaced_and_counted(text, expected, kind):
    row, _, counts = clean(text)
    assert row["text"] == expected
    assert counts[f"pii_{kind}"] == expected.count("<")
    assert sum(counts[f"pii_{k}"] for k in ("email", "ip", "phone")) == expected.count("<")
    assert row["flags"] == ["pii_scrubbed"]


@pytest.mark.parametrize(
    "text",
    [
        "Dates: 2023-05-12, 12/05/2023, 05.12.2023 10 Uhr, 12 May 2023.",
        "Years 1999 2000 2001 and the 1990-2000 decade.",
        "Prices $1,299.99, € 1 299, 12 345 678 901 people, 0.99 and 0,50.",
        "ISBN 978-0-306-40615-7 and ISBN 0-306-40615-2 and 0306406152.",
        "Version 1.2.3.4, v2.10.4, Windows 10.0.19045.2965, release 3.11.4, OID 1.3.6.1.2.1.1.5.",
        "Private 192.168.1.1, 10.0.0.1, 127.0.0.1, docs 203.0.113.50, IPv6 ::1 and fe80::1.",
        "At 12:30:45 on 2023-05-12T10:30; John 3:16; ratio 16:9; std::vector.",
        "Not a mail: user@localhost, @handle, a @ b.",
        "Coordinates 51.5074, -0.1278; score 3-1; room 101; 555-0132.",
    ],
)
def test_near_misses_are_not_pii(text):
    row, _, counts = clean(text)
    assert row["text"] == text
    assert not any(key.startswith("pii_") for key in counts)


def test_pii_kinds_can_be_turned_off_and_placeholders_chosen():
    text = "Mail jane@example.com from 8.8.8.8 or call +44 20 7946 0958."
    row, _, counts = clean(text, scrub_ip=False, email_placeholder="[email]")
    assert row["text"] == "Mail [email] from 8.8.8.8 or call <PHONE_NUMBER>."
    assert counts["pii_email"] == 1 and counts["pii_phone"] == 1 and "pii_ip" not in counts


# ----- books -----


@needs_shared_data
def test_gutenberg_header_left_in_a_book_is_removed():
    raw = (SHARED_DATA / "gutenberg" / "books" / "84.txt").read_text("ascii")  # CRLF, PG header
    row, decision, counts = clean(raw, kind="book")
    text = row["text"]
    assert decision is None and counts["gutenberg_stripped"] == 1
    assert "gutenberg" not in text.lower()
    assert text.startswith("Frankenstein,\n\nor the Modern Prometheus\n\nby\n\nMary")
    assert text.endswith("lost in darkness and distance.")
    # the web line rules do not run on books: short lines and "Letter 1" headings stay
    assert "\n\nLetter 1\n\n" in text
    assert "You will rejoice to hear that no disaster has accompanied the\n" in text


def test_book_lines_that_look_like_web_boilerplate_stay():
    text = "Home\n\nRead more\n\nShare this: he said, and the door closed behind him."
    row, _, counts = clean(text, kind="book")
    assert row["text"] == text and "lines_dropped_boilerplate" not in counts


# ----- what is dropped -----


def test_empty_and_short_documents_are_dropped_with_reasons():
    page = "Skip to content\n  \nHome | About | Contact\n\x00\u200b\nShare this"
    row, decision, _ = clean(page)
    assert decision == ("empty_after_clean", f"nothing left of {len(page)} chars")
    assert row["text"] == page  # rejected/ shows what came in

    _, decision, _ = clean("Skip to content\nJust five words of text.", min_words=20)
    assert decision == ("too_short", "5 words < 20")
    _, decision, counts = clean(PROSE, min_words=20)
    assert decision is None and counts["chars_out"] == len(PROSE)


def test_non_latin_scripts_are_untouched_but_normalized():
    texts = {
        "chinese": "北京是中华人民共和国的首都，也是全国的政治、文化中心。城市历史悠久！",
        "arabic": "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها، وتقع على ضفاف نهر النيل.",
        "russian": "Москва — столица России, крупнейший по численности населения город страны.",
        "hindi": "नई दिल्ली भारत की राजधानी है और यह यमुना नदी के किनारे बसी है।",
    }
    for language, text in texts.items():
        row, decision, counts = clean(text, min_words=10)
        assert decision is None, language  # the Chinese text counts as 34 words, not 1
        assert row["text"] == unicodedata.normalize("NFC", text), language
        assert set(counts) == {"chars_in", "chars_out"}, language


def test_multi_megabyte_text_is_cleaned_in_bounded_time():
    block = (
        f"{PROSE} Write to jane@example.com or call +44 20 7946 0958 about café prices.\n"
        "Share this\n"
        "Москва — столица России, 2023-05-12, version 1.2.3.4, 192.168.1.1 and 8.8.8.8.\n\n"
    )
    repeats = 5_000_000 // len(block)
    # inputs that make careless regular expressions backtrack: long runs without an ending
    pathological = "a." * 200_000 + " " * 200_000 + "1 " * 200_000 + "(1" * 100_000 + ":a" * 100_000
    started = time.perf_counter()
    row, decision, counts = clean("dÃ©jÃ  vu\n" + block * repeats + pathological)
    seconds = time.perf_counter() - started
    assert decision is None
    assert seconds < 60, f"{seconds:.1f} s for 5 MB"  # about 3 s on a laptop; quadratic is hours
    assert counts["pii_email"] == counts["pii_phone"] == counts["pii_ip"] == repeats
    assert counts["lines_dropped_boilerplate"] == repeats
    assert counts["mojibake_fixed"] == 1
    assert row["text"].startswith("déjà vu\n") and "Share this" not in row["text"]


@needs_shared_data
def test_a_books_transcribers_note_survives_clean_and_its_license_does_not():
    raw = (SHARED_DATA / "gutenberg" / "books" / "24675-8.txt").read_bytes().decode("latin-1")
    row, decision, counts = clean(raw, kind="book")
    text = row["text"]
    assert decision is None and counts["gutenberg_stripped"] == 1
    assert text.startswith("ELK DEEL IS AFZONDERLIJK VERKRIJGBAAR")
    assert "Transcriber's Notes\n\n- The errata listed" in text  # not a bare heading
    assert "standard Project\nGutenberg practice" in text
    assert "License" not in text and "*** END OF" not in text


def test_a_legacy_small_print_header_is_removed_from_a_book():
    header = (
        "**The Project Gutenberg Etext of A Book**\n\n"
        "*****These Etexts Were Prepared By Thousands of Volunteers!*****\n\n"
        "**END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.02/11/02*END*\n\n"
    )
    body = "CHAPTER I\n\nIt was a dark night, and the river ran on."
    row, decision, counts = clean(
        f"{header}{body}\n\nEnd of this Project Gutenberg etext\n", kind="book"
    )
    assert decision is None and row["text"] == body and counts["gutenberg_stripped"] == 1
