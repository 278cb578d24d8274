"""The user-space allocator's side of the runners: the ptmalloc model, and the contract continuing from its picks.

:meth:`UallocSide.apply` runs one op on the model, checks its answer is one the contract allows
(:func:`spec.ualloc.contract.answer_problem`), moves the contract's state on from it, then checks the contract
(:func:`~spec.ualloc.contract.contract_problems`, :func:`~spec.ualloc.contract.contents_problems`), the freed
mapping rule and the model's own invariants (:mod:`properties.ualloc.abstraction`).  It returns the op's
result (the model's answer, as the glibc oracle reports it) and the problems found, for the lockstep runner
to report as a divergence.
"""

from __future__ import annotations

from impl.ualloc.ptmalloc import HEAP_START, Process
from lang import ualloc_ops as uops
from lang.scenario import Result
from properties.ualloc.abstraction import answer_of, heap_problems, mapping_problems, owned_ranges
from spec.ualloc import contract


class UallocSide:
    """One process's allocator in the model, and the contract's state beside it."""

    def __init__(self, heap_start: int = HEAP_START) -> None:
        self.process = Process(heap_start)
        self.state = contract.initial(heap_start)
        self.calls = 0

    def apply(self, op: uops.UallocOp) -> tuple[Result, tuple[str, str]]:
        """Run ``op``; its result and ``(reason, detail)`` of the first problem (empty when it refines)."""
        index = self.calls
        before = self.state
        answer = self.process.apply(op)  # bad input raises here, before anything changed
        self.calls += 1
        seen = answer_of(self.process, answer)
        result = answer.to_json()
        problem = contract.answer_problem(before, op, seen)
        if problem:
            return result, ("answer not allowed", problem)
        self.state = contract.step(before, index, op, seen)
        mappings = frozenset((m.start, m.length) for m in self.process.heap.mappings.values())
        freed = contract.freed_mapping_problem(before, op, mappings)
        if freed:
            return result, ("freed mapping kept", freed)
        broken = contract.contract_problems(self.state)
        if broken:
            return result, ("contract broken", "; ".join(broken))
        if not self.state.corrupted:
            overwritten = contract.contents_problems(self.state, owned_ranges(self.process))
            if overwritten:
                return result, ("contents not kept", "; ".join(overwritten))
            inconsistent = heap_problems(self.process, self.state) + mapping_problems(self.process, self.state)
            if inconsistent:
                return result, ("allocator inconsistent", "; ".join(inconsistent))
        return result, ("", "")
