"""What the crash catalogue (``catalogue/crashes.py``) adds to a crash finding, for ``check`` (checks/run.py) and
live runs alike: the entry's id and the search query as evidence, its cause in the message, its fix and the query
(always last, as "Search: ...") in the suggestions."""
from __future__ import annotations

from typing import Any

from nndoctor.probes.errors import ErrorInfo


def known_evidence(info: ErrorInfo) -> dict[str, Any]:
    evidence: dict[str, Any] = {"error_type": type(info.exc).__name__, "search_query": info.query}
    if info.known is not None:
        evidence["known_error"] = info.known.id
    return evidence


def likely_cause(info: ErrorInfo) -> str:
    return f" Likely cause: {lower_first(info.known.cause)}" if info.known is not None else ""


def known_fix(info: ErrorInfo) -> list[str]:
    return [info.known.fix] if info.known is not None else []


def with_search(info: ErrorInfo, suggestions: list[str]) -> list[str]:
    """The suggestions, then the search query for the message as the last one."""
    return [*suggestions, f"Search: {info.query}"] if info.query else list(suggestions)


def lower_first(sentence: str) -> str:
    """"An in-place ..." -> "an in-place ..." after "Likely cause:"; acronyms ("NCCL, ...") stay."""
    first = sentence.split(" ", 1)[0]
    return sentence if sum(c.isupper() for c in first) > 1 else sentence[:1].lower() + sentence[1:]
