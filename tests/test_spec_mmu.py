"""The MMU spec on its own: purity, bad input, and rules worth pinning one by one."""

from __future__ import annotations

import pytest

from lang.errors import AddressError, ConfigError, InvalidArgument, UnknownCpu
from spec.paging import mmu
from spec.paging.address import is_canonical, join, split
from spec.paging.permissions import Control, Kind, Mode
from spec.paging.physmem import PhysMemory
from spec.paging.pte import PS, decode, encode, reserved_mask
from spec.paging.walk import PageFault, Translation, ad_update_allowed, walk


def test_write_returns_new_memory_and_leaves_the_old_one() -> None:
    """Spec memory is a value: writing gives a new one."""
    before = PhysMemory(2)
    after = before.write(0x8, 5)
    assert (0, 5) == (before.read(0x8), after.read(0x8))


@pytest.mark.parametrize("pa", [0x4, 0x2000, -8])
def test_bad_physical_address_is_rejected(pa: int) -> None:
    with pytest.raises(AddressError):
        PhysMemory(2).read(pa)


def test_value_wider_than_64_bits_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="64-bit"):
        PhysMemory(2).write(0, 1 << 64)


def test_unknown_cpu_and_bad_config() -> None:
    state = mmu.initial(4, 2)
    with pytest.raises(UnknownCpu):
        mmu.set_cpu(state, 2, Control())
    with pytest.raises(ConfigError):
        mmu.initial(0, 1)
    with pytest.raises(ConfigError):
        mmu.initial(4, 1, maxphyaddr=53)


def test_failed_set_cpu_leaves_state_unchanged() -> None:
    state = mmu.initial(4, 1)
    with pytest.raises(AddressError):
        mmu.set_cpu(state, 0, Control(cr3=0x4000))
    assert mmu.initial(4, 1) == state


@pytest.mark.parametrize(
    ("va", "levels", "canonical"),
    [
        (0x0000_7FFF_FFFF_FFFF, 4, True),
        (0x0000_8000_0000_0000, 4, False),
        (0xFFFF_8000_0000_0000, 4, True),
        (0xFFFF_7FFF_FFFF_FFFF, 4, False),
        (0x0000_8000_0000_0000, 5, True),
        (0x00FF_FFFF_FFFF_FFFF, 5, True),
        (0x0100_0000_0000_0000, 5, False),
        (0xFF00_0000_0000_0000, 5, True),
    ],
)
def test_canonical_boundaries(va: int, levels: int, canonical: bool) -> None:
    """Bits 63..47 (or 63..56) must all equal the top implemented bit."""
    assert canonical == is_canonical(va, levels)


def test_split_and_join_a_kernel_address() -> None:
    indices, offset = split(0xFFFF_8880_1234_5678, 4)
    assert ((273, 0, 145, 325), 0x678) == (indices, offset)
    assert 0xFFFF_8880_1234_5678 == join(indices, offset, 4)


def test_decode_encode_keeps_every_bit() -> None:
    word = 0xFFFF_FFFF_FFFF_FFFF
    assert word == encode(decode(word))


def test_reserved_bits_of_large_leaves() -> None:
    """A 2 MiB leaf reserves bits 20:13, a 1 GiB leaf 29:13; bit 12 is PAT (SDM tables 4-17, 4-19)."""
    assert (((1 << 21) - 1) & ~0x1FFF) == reserved_mask(PS, 2, 52, nxe=True)
    assert (((1 << 30) - 1) & ~0x1FFF) == reserved_mask(PS, 3, 52, nxe=True)
    assert PS == reserved_mask(0, 4, 52, nxe=True)


def test_faulting_walk_may_or_may_not_set_accessed() -> None:
    """The SDM leaves A on a faulting walk open: both choices are allowed, D never is."""
    mem = PhysMemory(8).write(0x1000, 0x2007).write(0x2000, 0x3007).write(0x3000, 0x4007).write(0x4000, 0x5005)
    ctl = Control(cr3=0x1000, wp=True)
    outcome = walk(mem, ctl, 0x0, Kind.WRITE, Mode.USER, 46)
    assert isinstance(outcome, PageFault)
    assert ad_update_allowed(mem, mem, outcome, Kind.WRITE)
    assert ad_update_allowed(mem, mem.write(0x1000, 0x2027), outcome, Kind.WRITE)
    assert not ad_update_allowed(mem, mem.write(0x4000, 0x5045), outcome, Kind.WRITE)


def test_successful_write_requires_accessed_and_dirty() -> None:
    mem = PhysMemory(8).write(0x1000, 0x2007).write(0x2000, 0x3007).write(0x3000, 0x4007).write(0x4000, 0x5007)
    outcome = walk(mem, Control(cr3=0x1000), 0x10, Kind.WRITE, Mode.USER, 46)
    assert isinstance(outcome, Translation)
    assert not ad_update_allowed(mem, mem, outcome, Kind.WRITE)
    full = mem.write(0x1000, 0x2027).write(0x2000, 0x3027).write(0x3000, 0x4027).write(0x4000, 0x5067)
    assert ad_update_allowed(mem, full, outcome, Kind.WRITE)
