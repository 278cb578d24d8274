"""Generated cases for the live OOM oracle (:mod:`oracles.linux.oom`).

A memory group of 2,048 or 4,096 pages (8 or 16 MiB), with the oracle's 16 MiB swap file or without swap;
one to three idle processes whose pages together stay below 80% of the limit (so the group only runs out
once the offender grows), each with an ``oom_score_adj`` from the tiers that matter: 0, positive values up
to 1000, and negative ones down to -1000 (the seed's -900 / 500 / 1000 policy among them); an offender that
touches three times the limit, more than memory and swap together, so at least one OOM happens; and, one
case in eight, the group's ``oom_kill_disable`` set while the offender grows.
"""

from __future__ import annotations

from hypothesis import strategies as st

from oracles.linux.oom import OomCase

LIMITS = (2048, 4096)
ADJS = (0, 0, 0, 100, 250, 500, 750, 1000, -1, -500, -900, -1000)
OFFENDER_ADJS = (0, 0, 300, 500, 1000, -900, -1000)


@st.composite
def oom_cases(draw: st.DrawFn) -> OomCase:
    limit = draw(st.sampled_from(LIMITS))
    n = draw(st.integers(1, 3))
    share = limit * 8 // 10 // n
    tasks = tuple((draw(st.integers(0, share)), draw(st.sampled_from(ADJS))) for _ in range(n))
    return OomCase(
        limit=limit,
        swap=draw(st.booleans()),
        tasks=tasks,
        offender_adj=draw(st.sampled_from(OFFENDER_ADJS)),
        grow=3 * limit,
        kill_disable=draw(st.sampled_from((False,) * 7 + (True,))),
    )
