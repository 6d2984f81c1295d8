"""Gutenberg's header and footer: every marker of the documented lists around a real book body,
the spellings the issue reported, and the ten real books."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from pipeline import gutenberg
from pipeline.gutenberg import (
    END_MARKERS,
    FOOTER_STARTS,
    HEADER_ENDS,
    LICENSE_WORDS,
    OUR_FOOTER_STARTS,
    START_MARKERS,
    license_text,
    strip_boilerplate,
)
from tests.conftest import SHARED_DATA, needs_shared_data

BOOKS = SHARED_DATA / "gutenberg" / "books"

# A book body for the tests that need no shared data: 120 lines, so that the footer markers a
# header may hold too (Krugel's 100-line rule) count.
VERSE = "\n".join(f"Line {n} of the song, and the river ran on." for n in range(1, 121))
BODY = f"CHAPTER I\n\nThe first line of the book.\n\n{VERSE}\n\nThe last line of the book."

MODERN_HEADER = """\
The Project Gutenberg EBook of A Book, by An Author

This eBook is for the use of anyone anywhere at no cost and with
almost no restrictions whatsoever.  You may copy it, give it away or
re-use it under the terms of the Project Gutenberg License included
with this eBook or online at www.gutenberg.org


Title: A Book

Author: An Author

Release Date: May 8, 2007  [EBook #3261]

Language: English

"""
LEGACY_HEADER = """\
The Project Gutenberg Etext of A Book, by An Author

Copyright laws are changing all over the world, be sure to check
the copyright laws for your country before posting these files!!

Please take a look at the important information in this header.
We encourage you to keep this file on your own disk, keeping an
electronic path open for the next readers.  Do not remove this.


**Welcome To The World of Free Plain Vanilla Electronic Texts**

**Etexts Readable By Both Humans and By Computers, Since 1971**

*These Etexts Prepared By Hundreds of Volunteers and Donations*

Information on contacting Project Gutenberg to get Etexts, and
further information is included below.  We need your donations.

"""
SMALL_PRINT = """\
***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this "Small Print!" statement here?  You know: lawyers.
They tell us you might sue us if there is something wrong with
your copy of this etext, even if you got it for free from
someone other than us, and even if what's wrong is not our
fault.

LIMITED WARRANTY; DISCLAIMER OF DAMAGES
But for the "Right of Replacement or Refund" described below,
[1] the Project (and any other party you may receive this
etext from as a PROJECT GUTENBERG-tm etext) disclaims all
liability to you for damages, costs and expenses.

"""
FOOTER_LICENSE = """\

*** START: FULL LICENSE ***

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

Project Gutenberg-tm is synonymous with the free distribution of
electronic works in formats readable by the widest variety of computers.
"""


def book_lines(text: str) -> list[str]:
    """The non-blank lines: what a reader checks survived, in order, and nothing else."""
    return [line for line in text.splitlines() if line.strip()]


def marker_line(marker: str) -> str:
    """A marker of the lists as a file writes it: the START/END lines name the book and close
    their asterisks, the small print's end has its version, a credit names its producer."""
    marker = marker.strip()
    upper = marker.upper()
    if "START OF" in upper or "END OF" in upper:
        return f"{marker} EBOOK A BOOK ***"
    if "END THE SMALL PRINT" in upper or "END*THE SMALL PRINT" in upper:
        return f"{marker}! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"
    if marker.endswith((" by", " of", " of ")):
        return f"{marker} A Book, by An Author"
    return marker


def assert_only_the_book_left(raw: str, body: str) -> None:
    text, found = strip_boilerplate(raw)
    assert found == "markers"
    assert book_lines(text) == book_lines(body)
    assert license_text(text) == []


@cache
def real_body() -> str:
    """Alice's own text, cut from the file by its own two marker lines, not by the stripper."""
    raw = gutenberg.read_book_file(BOOKS / "11.txt").replace("\r\n", "\n")
    start = raw.index("\n", raw.index("*** START OF THIS PROJECT GUTENBERG EBOOK")) + 1
    return raw[start : raw.index("End of Project Gutenberg's Alice")].strip()


# ----- the marker corpus: one synthetic header or footer per marker around a real body -----


def test_the_lists_hold_every_marker_of_the_cleaning_tools():
    # c-w/gutenberg 0.8.2: 53 TEXT_START_MARKERS, 26 TEXT_END_MARKERS
    assert len(START_MARKERS) == len(set(START_MARKERS)) == 53
    assert len(END_MARKERS) == len(set(END_MARKERS)) == 26


def test_every_strong_marker_holds_a_word_of_the_quick_test():
    for marker in HEADER_ENDS + FOOTER_STARTS + OUR_FOOTER_STARTS:
        assert any(word in marker.lower() for word in LICENSE_WORDS), marker


@needs_shared_data
@pytest.mark.parametrize("marker", sorted(START_MARKERS))
@pytest.mark.parametrize(
    "preamble", ["", MODERN_HEADER, LEGACY_HEADER], ids=["bare", "modern", "legacy"]
)
def test_each_start_marker_loses_its_header_and_keeps_the_book(marker, preamble):
    body = real_body()
    raw = f"{preamble}{marker_line(marker)}\n\n\n{body}\n\n{FOOTER_LICENSE}"
    assert_only_the_book_left(raw.replace("\n", "\r\n"), body)


@needs_shared_data
@pytest.mark.parametrize("marker", sorted(END_MARKERS))
def test_each_end_marker_loses_its_footer_and_keeps_the_book(marker):
    body = real_body()
    header = f"{MODERN_HEADER}*** START OF THIS PROJECT GUTENBERG EBOOK A BOOK ***\n\n"
    raw = f"{header}{body}\n\n\n\n{marker_line(marker)}\n\n{SMALL_PRINT}{FOOTER_LICENSE}"
    assert_only_the_book_left(raw.replace("\n", "\r\n"), body)


# ----- the spellings of the issue -----


@pytest.mark.parametrize(
    "end_of_small_print",
    [
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
        "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.02/11/02*END*",
        "**END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS**Ver.02/11/02*END*",
        "*END*  THE SMALL PRINT! FOR PUBLIC DOMAIN\nETEXTS*Ver.04.29.93*END*",
    ],
)
def test_the_legacy_small_print_ends_the_header_in_all_its_spellings(end_of_small_print):
    raw = f"{LEGACY_HEADER}{SMALL_PRINT}{end_of_small_print}\n\n{BODY}\n"
    raw += "\nEnd of The Project Gutenberg Etext of A Book\n"
    assert_only_the_book_left(raw, BODY)


def test_a_start_marker_split_over_two_lines_leaves_no_tail():
    raw = (
        f"{MODERN_HEADER}*** START OF THE PROJECT GUTENBERG EBOOK THE PRISON OF\n"
        f"PROMETHEUS***\n\n{BODY}\n\n*** END OF THE PROJECT\nGUTENBERG EBOOK ***\n"
    )
    text, _ = strip_boilerplate(raw)
    assert text.startswith("CHAPTER I\n") and "PROMETHEUS" not in text
    assert text.endswith("The last line of the book.")


def test_a_marker_phrase_split_over_two_lines_is_found():
    raw = f"*** START OF THIS PROJECT\nGUTENBERG EBOOK A BOOK ***\n\n{BODY}\n{FOOTER_LICENSE}"
    assert_only_the_book_left(raw, BODY)


def test_an_etext_footer_ends_the_book():
    raw = (
        f"{LEGACY_HEADER}*END*THE SMALL PRINT!\n\n{BODY}\n\nEnd of this Project Gutenberg etext.\n"
    )
    assert_only_the_book_left(raw + SMALL_PRINT, BODY)


def test_a_legacy_header_with_no_start_marker_goes():
    footer = "End of this Project Gutenberg Etext\n"
    raw = f"{LEGACY_HEADER}\nProduced by A. Volunteer\n\n\n{BODY}\n\n{footer}"
    assert_only_the_book_left(raw, BODY)


def test_a_small_print_at_the_top_with_no_end_marker_goes():
    assert_only_the_book_left(f"{LEGACY_HEADER}{SMALL_PRINT}\n{BODY}\n", BODY)


def test_a_small_print_at_the_end_of_a_book_is_a_footer_not_a_header():
    header = "*** START OF THE PROJECT GUTENBERG EBOOK A BOOK ***\n\n"
    raw = f"{header}{BODY}\n\n{SMALL_PRINT}*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*END*\n"
    assert_only_the_book_left(raw, BODY)


def test_a_world_library_notice_inside_the_book_goes():
    notice = (
        "<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\nSHAKESPEARE IS COPYRIGHT "
        "1990-1993 BY WORLD LIBRARY, INC., ...\nCOMMERCIALLY.  PROHIBITED COMMERCIAL "
        "DISTRIBUTION INCLUDES BY ANY\nSERVICE THAT CHARGES FOR DOWNLOAD TIME OR FOR MEMBERSHIP.>>"
    )
    first, rest = BODY.split("\n\n", 1)
    raw = f"*** START OF THE PROJECT GUTENBERG EBOOK A BOOK ***\n\n{first}\n\n{notice}\n\n{rest}"
    assert_only_the_book_left(raw, BODY)


# ----- what stays -----


def test_a_transcribers_note_that_mentions_project_gutenberg_is_kept_whole():
    note = (
        "Transcriber's Notes\n\n"
        "- The errata listed in the back of the book are original errata.\n"
        "- Footnotes have been renumbered throughout. Renumbering footnotes is standard Project\n"
        "Gutenberg practice, as is the moving of footnotes.\n"
        "[Note Project Gutenberg: music transcribed in Lilypond format]"
    )
    raw = f"{MODERN_HEADER}*** START OF THIS PROJECT GUTENBERG EBOOK A BOOK ***\n\n"
    raw += f"{BODY}\n\n{note}\n\nEnd of Project Gutenberg's A Book\n{FOOTER_LICENSE}"
    text, _ = strip_boilerplate(raw)
    assert book_lines(text) == book_lines(f"{BODY}\n\n{note}")
    assert license_text(text) == []


def test_credit_words_inside_the_book_stay():
    body = BODY.replace("The first line", "The first line\nProduced by the river, the")
    body += "\n\nProduced by Moonlight: a song.\nE-text prepared by the\nwind, he said."
    raw = f"*** START OF THE PROJECT GUTENBERG EBOOK A BOOK ***\n\n{body}\n"
    assert book_lines(strip_boilerplate(raw)[0]) == book_lines(body)


def test_a_title_page_with_a_producer_and_prose_about_licenses_stay():
    title = "THE MIKADO\nProduced by Richard D'Oyly Carte at the Savoy"
    prose = "He gave her full license to read the small print of the lease."
    body = f"{title}\n\n{BODY}\n\n{prose}\n\nFINIS."
    raw = f"{MODERN_HEADER}*** START OF THE PROJECT GUTENBERG EBOOK A BOOK ***\n\n{body}\n"
    assert book_lines(strip_boilerplate(raw + FOOTER_LICENSE)[0]) == book_lines(body)


def test_a_book_without_markers_is_left_whole():
    raw = "CHAPTER I\r\n\r\nA book that mentions no origin.\r\n\r\n\r\nThe end.\r\n"
    assert strip_boilerplate(raw) == (
        "CHAPTER I\n\nA book that mentions no origin.\n\n\nThe end.",
        "no_markers",
    )


# ----- the ten real books -----

# (first line, last line) of each book's own text, read off the files
REAL_BOOK_ENDS = {
    "11.txt": ("ALICE'S ADVENTURES IN WONDERLAND", "THE END"),
    "84.txt": ("Frankenstein,", "lost in darkness and distance."),
    "1342.txt": ("PRIDE AND PREJUDICE", "been the means of uniting them."),
    "1661.txt": ("THE ADVENTURES OF SHERLOCK HOLMES", "she has met with considerable success."),
    "2701.txt": ("MOBY DICK; OR THE WHALE", "only found another\norphan."),
    "972.txt": ("THE DEVIL'S DICTIONARY", "sheds its horn every two years."),
    "3261.txt": ("NEWS FROM NOWHERE", "Cirencester and Burford he must have meant."),
    "9198.txt": ("THE COMPLETE ANGLER;", "FINIS."),
    "24675-8.txt": (
        "ELK DEEL IS AFZONDERLIJK VERKRIJGBAAR",
        "retain the exact number of dashes from the printed\nbook.",
    ),
    "44157-0.txt": ("Au lecteur.", "vensterbank.)"),
}


@needs_shared_data
@pytest.mark.parametrize("name", sorted(REAL_BOOK_ENDS))
def test_a_real_book_keeps_its_first_and_last_lines_and_loses_the_license(name):
    first, last = REAL_BOOK_ENDS[name]
    text, found = strip_boilerplate(gutenberg.read_book_file(BOOKS / name))
    assert found == "markers"
    assert text.lstrip().startswith(first) and text.rstrip().endswith(last), name
    assert license_text(text) == [], name
    assert strip_boilerplate(text) == (text.strip(), "no_markers")  # clean runs it on extract's


@needs_shared_data
def test_transcribers_notes_of_the_real_books_are_kept():
    dutch = strip_boilerplate(gutenberg.read_book_file(BOOKS / "24675-8.txt"))[0]
    assert "Transcriber's Notes\n\n- The errata listed" in dutch
    assert "standard Project\nGutenberg practice" in dutch
    moby = strip_boilerplate(gutenberg.read_book_file(BOOKS / "2701.txt"))[0]
    assert "one from Project Gutenberg's archives" in moby


def test_book_files_decode_as_their_collection_writes_them(tmp_path: Path):
    (tmp_path / "a-0.txt").write_bytes("\ufeffÉté".encode())
    (tmp_path / "a-8.txt").write_bytes("Été".encode("latin-1"))
    assert gutenberg.read_book_file(tmp_path / "a-0.txt") == "Été"
    assert gutenberg.read_book_file(tmp_path / "a-8.txt") == "Été"
