"""Day-unique dedup: one record per phone number per UTC day."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.dedup import DedupResult, dedup_day_unique, dedup_key

PROPERTIES = settings(derandomize=True, max_examples=200, deadline=None, database=None)
DAY = "2026-01-15"
A, B, C = "+77012345678", "+77012345679", "+14155550100"


def test_empty_batch() -> None:
    assert dedup_day_unique([], DAY) == DedupResult(kept=[], dropped=0)


def test_no_duplicates_keeps_everything() -> None:
    assert dedup_day_unique([A, B, C], DAY) == DedupResult(kept=[0, 1, 2], dropped=0)


def test_duplicates_inside_the_batch_keep_the_first() -> None:
    assert dedup_day_unique([A, B, A, C, B, A], DAY) == DedupResult(kept=[0, 1, 3], dropped=3)


def test_numbers_already_stored_that_day_are_dropped() -> None:
    existing = {(DAY, A), ("2026-01-14", B)}
    result = dedup_day_unique([A, B, C, A], DAY, existing)
    assert result == DedupResult(kept=[1, 2], dropped=2)


def test_existing_may_be_any_collection() -> None:
    result = dedup_day_unique([A, B], DAY, [(DAY, B)])
    assert result == DedupResult(kept=[0], dropped=1)


def test_dedup_key() -> None:
    assert dedup_key(DAY, A) == "2026-01-15|+77012345678"


phones = st.sampled_from([A, B, C, "+442071838750", "+4930123456", "+33142685300"])
days = st.sampled_from(["2026-01-14", DAY, "2026-01-16"])


@PROPERTIES
@given(
    st.lists(phones, max_size=40),
    days,
    st.sets(st.tuples(days, phones), max_size=10),
)
def test_keeps_first_new_occurrence_per_phone(
    batch: list[str], day: str, existing: set[tuple[str, str]]
) -> None:
    result = dedup_day_unique(batch, day, existing)
    assert len(result.kept) + result.dropped == len(batch)
    assert result.kept == sorted(result.kept)
    kept_phones = [batch[i] for i in result.kept]
    # exactly one record per phone that was not already stored for that day
    assert sorted(kept_phones) == sorted({p for p in batch if (day, p) not in existing})
    # the kept record is the first occurrence of its phone in the batch
    assert all(batch.index(batch[i]) == i for i in result.kept)
    # idempotent: storing the kept ones and re-running drops the whole batch
    stored = existing | {(day, p) for p in kept_phones}
    assert dedup_day_unique(batch, day, stored).kept == []


@PROPERTIES
@given(st.lists(phones, max_size=40), days)
def test_keys_of_kept_records_are_unique(batch: list[str], day: str) -> None:
    result = dedup_day_unique(batch, day)
    keys = [dedup_key(day, batch[i]) for i in result.kept]
    assert len(keys) == len(set(keys))
