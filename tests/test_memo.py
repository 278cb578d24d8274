"""The one-entry memo of the invariant checks: reused only for the very same parts, so a change is always checked."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from properties.memo import LastState
from spec.alloc.buddy import initial
from spec.mm.invariants import violations
from spec.mm.kernel import Kernel, Page, boot


def booted() -> Kernel:
    return boot(initial(16, 2), 1, {})


def test_the_same_parts_reuse_the_result_and_any_new_part_is_checked() -> None:
    """A copy with the same parts is a hit; a new part, even an equal one, is checked again."""
    memo = LastState(violations)
    k = booted()
    assert [] == memo(k)
    assert [] == memo(replace(k))
    assert (1, 1) == (memo.hits, memo.misses)
    assert [] == memo(replace(k, pages=MappingProxyType(dict(k.pages))))
    assert (1, 2) == (memo.hits, memo.misses)


def test_a_violation_introduced_after_a_clean_state_is_found() -> None:
    """A state broken in one part right after a clean one (a page with a reference count nothing explains)."""
    memo = LastState(violations)
    k = booted()
    assert [] == memo(k)
    pfn = next(p for p in range(16) if p not in k.boot)
    stray = Page(refcount=1, mapcount=0, anon=True, exclusive=True)
    broken = replace(k, pages=MappingProxyType({**k.pages, pfn: stray}))
    assert memo(broken) == violations(broken) != []
    assert [] == memo(k)
