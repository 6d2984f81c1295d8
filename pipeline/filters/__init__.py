"""The filters of the filter stage, one module per family; FILTERS maps each step name (the
config's `filter.steps`) to its class. pipeline/filter.py applies them to documents."""

from __future__ import annotations

from pipeline.filters.base import Document, Filter
from pipeline.filters.c4 import C4Quality
from pipeline.filters.decontamination import Decontamination
from pipeline.filters.fineweb import FineWebQuality
from pipeline.filters.gopher import GopherQuality, GopherRepetition
from pipeline.filters.language import Language
from pipeline.filters.quality import Quality
from pipeline.filters.url_blocklist import UrlBlocklist

FILTERS: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (
        Language,
        GopherQuality,
        GopherRepetition,
        C4Quality,
        FineWebQuality,
        UrlBlocklist,
        Quality,
        Decontamination,
    )
}

__all__ = ["FILTERS", "Document", "Filter"]
