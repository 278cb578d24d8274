"""The page-table strategies build what they promise: valid paths walk to their leaf, flips leave canonical form."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from properties.paging import strategies as gen
from spec.paging import mmu as spec_mmu
from spec.paging.address import is_canonical
from spec.paging.permissions import PF_RSVD, Control, Kind, Mode
from spec.paging.walk import MachineCheck, PageFault, Translation, walk


def memory_after(ops: list[gen.WritePhys]) -> spec_mmu.MmuState:
    """The spec state after the stores ``ops``."""
    state = spec_mmu.initial(gen.FRAMES, 1, gen.MAXPHYADDR)
    for op in ops:
        state = spec_mmu.write_phys(state, op.pa, op.value)
    return state


@given(gen.path_mappings(), gen.levels(), st.booleans())
def test_a_flawless_path_walks_to_its_leaf(mapping: gen.PathMapping, levels: int, nxe: bool) -> None:
    """On empty memory a path without a flaw translates, or faults only on rights, at its leaf level."""
    mapping = replace(mapping, flaw=None)
    state = memory_after(mapping.ops(0, levels, nxe))
    ctl = Control(cr3=0, nxe=nxe, la57=levels == 5)
    outcome = walk(state.memory, ctl, mapping.address(levels), Kind.READ, Mode.SUPERVISOR, gen.MAXPHYADDR)
    if isinstance(outcome, Translation):
        assert mapping.leaf_level == outcome.level
    else:
        assert isinstance(outcome, PageFault | MachineCheck), outcome
        if isinstance(outcome, PageFault):
            assert not outcome.error_code & PF_RSVD


@given(gen.index_paths(), gen.page_offsets(), gen.levels(), st.integers(0, 16))
def test_a_flip_makes_the_address_non_canonical(path: tuple[int, ...], offset: int, levels: int, flip: int) -> None:
    """Flipping one sign-extension bit always leaves canonical form; no flip always keeps it."""
    assert is_canonical(gen.virtual_address(path, offset, levels), levels)
    assert not is_canonical(gen.virtual_address(path, offset, levels, flip), levels)


@given(gen.entry_words())
def test_entry_words_are_64_bit(word: int) -> None:
    """Every generated entry fits a 64-bit word."""
    assert 0 <= word < 1 << 64


@given(st.lists(gen.write_entries(), max_size=6), gen.index_paths())
def test_present_path_takes_a_present_top_entry(ops: list[gen.WritePhys], choices: tuple[int, ...]) -> None:
    """The top index of a followed path names a present entry whenever the root table has one."""
    state = memory_after(ops)
    present = gen.present_indices(state.memory.words, 0)
    path = gen.present_path(state.memory.words, 0, 4, choices)
    assert (path[1] in present) if present else path[1] == choices[1]
