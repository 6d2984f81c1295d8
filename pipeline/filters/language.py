"""Language identification with fastText's lid.176 model (Joulin et al. 2016, "Bag of Tricks
for Efficient Text Classification"; 176 languages), as datatrove's LanguageFilter
(language_filter.py, utils/lid.py)."""

from __future__ import annotations

from pipeline import langid
from pipeline.config import FilterConfig
from pipeline.filters.base import Document, Filter, Score, below, first_failure


class Language(Filter):
    """Keeps documents whose most likely language is allowed, with at least `min_score`
    probability. Defaults: English only, min_score 0.65 (datatrove's LanguageFilter and DCLM).
    The model reads the whole text with line breaks as spaces, as datatrove's. datatrove keeps a
    document if any allowed language scores over the threshold; for thresholds of 0.5 and more
    that is the same as the top language, which is all this asks the model for (faster).
    `compat: datatrove` also drops a score exactly at the threshold (datatrove wants it over)."""

    name = "language"
    scores = ("detected", "score")
    text_scores = frozenset({"detected"})

    def __init__(self, cfg: FilterConfig.Language):
        self.cfg = cfg
        self.languages = frozenset(cfg.languages)
        self.model = langid.load(cfg.model)

    def score(self, doc: Document) -> dict[str, Score]:
        labels, probs = self.model.predict(doc.text.replace("\n", " "), k=1)
        return {"detected": labels[0].removeprefix("__label__"), "score": float(probs[0])}

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        return first_failure(
            ("detected", bool(self.languages) and scores["detected"] not in self.languages),
            ("score", self._too_low(scores["score"])),
            ignore=ignore,
        )

    def _too_low(self, score: Score) -> bool:
        if self.cfg.compat == "datatrove":  # datatrove keeps only scores over the threshold
            return score is not None and score <= self.cfg.min_score
        return below(score, self.cfg.min_score)
