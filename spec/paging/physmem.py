"""Physical memory as an immutable value: frames of 64-bit words.

Memory has ``frames`` frames of 4 KiB; each holds 512 little-endian 64-bit
words.  Only non-zero words are stored, so an empty gigabyte costs nothing.
Updating returns a new memory and leaves the old one as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lang.errors import AddressError, InvalidArgument
from spec.paging.address import PAGE_SIZE, WORD_SIZE, PhysAddr


@dataclass(frozen=True, slots=True)
class PhysMemory:
    """``frames`` frames of zero-initialised memory with the given non-zero words."""

    frames: int
    words: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def size(self) -> int:
        """Bytes of memory: ``frames * 4096``."""
        return self.frames * PAGE_SIZE

    def __hash__(self) -> int:
        return hash((self.frames, frozenset(self.words.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PhysMemory):
            return NotImplemented
        return self.frames == other.frames and dict(self.words) == dict(other.words)

    def __repr__(self) -> str:
        words = ", ".join(f"{pa:#x}: {value:#x}" for pa, value in sorted(self.words.items()))
        return f"PhysMemory(frames={self.frames}, words={{{words}}})"

    def __deepcopy__(self, memo: dict[int, object]) -> PhysMemory:
        return self  # an immutable value: copies may share it

    def __reduce__(self) -> tuple[object, tuple[int, dict[int, int]]]:
        return _rebuild, (self.frames, dict(self.words))

    def contains(self, pa: int) -> bool:
        """True when the word at ``pa`` lies inside memory."""
        return pa >= 0 and pa + WORD_SIZE <= self.size

    def read(self, pa: int) -> int:
        """The 64-bit word at the 8-byte aligned address ``pa``."""
        check_word_address(pa, self.frames)
        return self.words.get(pa, 0)

    def write(self, pa: int, value: int) -> PhysMemory:
        """Memory with the word at ``pa`` replaced by ``value``."""
        check_word_address(pa, self.frames)
        check_word_value(value)
        words = dict(self.words)
        if value:
            words[pa] = value
        else:
            words.pop(pa, None)
        return PhysMemory(self.frames, MappingProxyType(words))

    def set_bits(self, updates: Mapping[int, int]) -> PhysMemory:
        """Memory with each word ``pa`` ORed with ``updates[pa]`` (the processor's A/D writes)."""
        words = dict(self.words)
        for pa, bits in updates.items():
            check_word_address(pa, self.frames)
            words[pa] = words.get(pa, 0) | bits
        return PhysMemory(self.frames, MappingProxyType(words))

    def nonzero(self) -> Iterator[tuple[PhysAddr, int]]:
        """The non-zero words, by address."""
        for pa in sorted(self.words):
            yield PhysAddr(pa), self.words[pa]


def _rebuild(frames: int, words: dict[int, int]) -> PhysMemory:
    """Unpickle a :class:`PhysMemory` (a read-only mapping does not pickle by itself)."""
    return PhysMemory(frames, MappingProxyType(words))


def check_word_address(pa: int, frames: int) -> None:
    """Raise :class:`AddressError` unless ``pa`` is an 8-byte aligned address inside memory."""
    if pa % WORD_SIZE:
        raise AddressError(f"physical address {pa:#x} is not 8-byte aligned: words are 64-bit")
    if not 0 <= pa < frames * PAGE_SIZE:
        raise AddressError(f"physical address {pa:#x} is outside memory: allowed 0x0 .. {frames * PAGE_SIZE - 8:#x}")


def check_word_value(value: int) -> None:
    """Raise :class:`InvalidArgument` unless ``value`` fits in 64 bits."""
    if not 0 <= value < 1 << 64:
        raise InvalidArgument(f"value {value:#x} does not fit a 64-bit word: allowed 0 .. 2**64-1")
