"""Day-unique dedup (``day_unique: "delete"``): one call per phone number per UTC day."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DedupResult:
    """Which records of a batch to keep (indices, in batch order) and how many were dropped."""

    kept: list[int]
    dropped: int


def dedup_key(day: str, phone: str) -> str:
    """Return the storage key ``"{day}|{phone}"`` that is unique per campaign."""
    return f"{day}|{phone}"


def dedup_day_unique(
    phones: Sequence[str], day: str, existing: Collection[tuple[str, str]] = ()
) -> DedupResult:
    """Keep the first occurrence of each phone for ``day`` that is not already stored.

    ``phones`` are normalised numbers of one batch, all added on ``day``; ``existing``
    holds the ``(day, phone)`` pairs already in the campaign (a set keeps lookups O(1)).
    """
    seen: set[str] = set()
    kept: list[int] = []
    for index, phone in enumerate(phones):
        if phone in seen or (day, phone) in existing:
            continue
        seen.add(phone)
        kept.append(index)
    return DedupResult(kept=kept, dropped=len(phones) - len(kept))
