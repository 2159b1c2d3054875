"""The page planner over ``call_pages`` block counts (pure: no database)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.storage.calls import BLOCK, RangePlan, plan_page


def test_dense_blocks_give_the_exact_range() -> None:
    blocks = [(b, BLOCK) for b in range(100)]
    assert plan_page(blocks, 99_800, 100) == RangePlan(99_800, 99_900, 0)
    assert plan_page(blocks, 950, 100) == RangePlan(950, 1050, 0)
    assert plan_page(blocks, 100_000, 100) is None


def test_a_block_with_holes_is_skipped_inside() -> None:
    blocks = [(0, BLOCK), (1, 997), (2, BLOCK)]
    assert plan_page(blocks, 1000, 20) == RangePlan(1000, 2000, 0)
    assert plan_page(blocks, 1990, 20) == RangePlan(1000, 2013, 990)
    assert plan_page(blocks, 1995, 5) == RangePlan(1000, 2003, 995)


def test_empty_blocks_are_passed_over() -> None:
    blocks = [(0, 0), (1, 5), (2, 0), (5, 3)]
    assert plan_page(blocks, 0, 10) == RangePlan(1000, 6000, 0)
    assert plan_page(blocks, 5, 10) == RangePlan(5000, 6000, 0)
    assert plan_page(blocks, 8, 10) is None


@st.composite
def campaigns(draw: st.DrawFn) -> list[int]:
    """Live seqs of a campaign: some blocks dense, some with holes, some empty."""
    seqs: list[int] = []
    for block in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["dense", "holes", "empty"]))
        if kind == "dense":
            seqs += range(block * BLOCK, (block + 1) * BLOCK)
        elif kind == "holes":
            seqs += sorted(
                draw(st.sets(st.integers(block * BLOCK, (block + 1) * BLOCK - 1), max_size=30))
            )
    return seqs


@given(campaigns(), st.integers(0, 6000), st.integers(1, 100))
def test_the_plan_reads_exactly_the_page(seqs: list[int], skip: int, limit: int) -> None:
    counts = [(b, sum(1 for s in seqs if s // BLOCK == b)) for b in range(6)]
    plan = plan_page(counts, skip, limit)
    expected = seqs[skip : skip + limit]
    if plan is None:
        assert expected == []
        return
    in_range = [s for s in seqs if plan.lo <= s < plan.hi]
    assert in_range[plan.skip : plan.skip + limit] == expected
    assert plan.skip < BLOCK
