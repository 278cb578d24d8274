"""Simulated physical memory: 4 KiB frames of little-endian 64-bit words.

Frames are allocated on first write, so a large, mostly empty memory costs
only what is used.  Reads of a frame never written return zeros.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from itertools import compress

from lang.errors import AddressError, InvalidArgument

FRAME_SHIFT = 12
FRAME_SIZE = 1 << FRAME_SHIFT
_WORD = struct.Struct("<Q")
_ZERO_FRAME = bytes(FRAME_SIZE)
_WORDS_PER_FRAME = FRAME_SIZE // 8
_NATIVE_LITTLE = sys.byteorder == "little"


class PhysMem:
    """``frames`` frames of byte-addressed memory, accessed by aligned 64-bit words."""

    __slots__ = ("_frames", "frames", "size")

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise InvalidArgument(f"frames must be at least 1, got {frames}")
        self.frames = frames
        self.size = frames << FRAME_SHIFT
        self._frames: dict[int, bytearray] = {}

    def clone(self) -> PhysMem:
        """An independent copy (the frames copied)."""
        new = PhysMem.__new__(PhysMem)
        new.frames, new.size = self.frames, self.size
        new._frames = {pfn: bytearray(frame) for pfn, frame in self._frames.items()}
        return new

    def _check(self, pa: int) -> None:
        if pa & 7:
            raise AddressError(f"physical address {pa:#x} is not 8-byte aligned: words are 64-bit")
        if not 0 <= pa < self.size:
            raise AddressError(f"physical address {pa:#x} is outside memory: allowed 0x0 .. {self.size - 8:#x}")

    def read(self, pa: int) -> int:
        """The word at ``pa``; raises :class:`AddressError` if misaligned or outside memory."""
        if pa & 7 or not 0 <= pa < self.size:
            self._check(pa)
        frame = self._frames.get(pa >> FRAME_SHIFT)
        if frame is None:
            return 0
        value: int = _WORD.unpack_from(frame, pa & (FRAME_SIZE - 1))[0]
        return value

    def read_unchecked(self, pa: int) -> int:
        """The word at ``pa``, which the caller has checked (the walker's fast path)."""
        frame = self._frames.get(pa >> FRAME_SHIFT)
        if frame is None:
            return 0
        value: int = _WORD.unpack_from(frame, pa & (FRAME_SIZE - 1))[0]
        return value

    def write(self, pa: int, value: int) -> None:
        """Store ``value`` at ``pa``; on bad input raises and changes nothing."""
        self._check(pa)
        if not 0 <= value < 1 << 64:
            raise InvalidArgument(f"value {value:#x} does not fit a 64-bit word: allowed 0 .. 2**64-1")
        self.write_unchecked(pa, value)

    def write_unchecked(self, pa: int, value: int) -> None:
        """Store a checked word (the walker's A/D updates)."""
        pfn = pa >> FRAME_SHIFT
        frame = self._frames.get(pfn)
        if frame is None:
            if not value:
                return
            frame = self._frames[pfn] = bytearray(_ZERO_FRAME)
        _WORD.pack_into(frame, pa & (FRAME_SIZE - 1), value)

    def written_frames(self) -> list[int]:
        """The frames ever written (every other frame reads as zeros), in no particular order."""
        return list(self._frames)

    def nonzero_words(self) -> Iterator[tuple[int, int]]:
        """Every non-zero word as ``(pa, value)``, in address order."""
        for pfn in sorted(self._frames):
            base = pfn << FRAME_SHIFT
            for offset, (value,) in enumerate(_WORD.iter_unpack(self._frames[pfn])):
                if value:
                    yield base + offset * 8, value

    def zero_frame(self, pfn: int) -> None:
        """Fill frame ``pfn`` with zeros (``clear_page``)."""
        self._frames.pop(pfn, None)

    def copy_frame(self, src: int, dst: int) -> None:
        """Copy frame ``src`` over frame ``dst`` (``copy_page``)."""
        frame = self._frames.get(src)
        if frame is None:
            self._frames.pop(dst, None)
        else:
            self._frames[dst] = bytearray(frame)

    def frame_snapshot(self, pfn: int) -> bytes:
        """An immutable copy of frame ``pfn`` (empty for a frame never written): equal snapshots, equal contents."""
        frame = self._frames.get(pfn)
        return b"" if frame is None else bytes(frame)

    def frame_matches(self, pfn: int, snapshot: bytes) -> bool:
        """Frame ``pfn`` still holds what :meth:`frame_snapshot` returned (compared byte for byte, without a copy)."""
        frame = self._frames.get(pfn)
        return snapshot == b"" if frame is None else frame == snapshot

    def frame_words(self, pfn: int) -> dict[int, int]:
        """The non-zero words of frame ``pfn`` by byte offset."""
        return {index * 8: value for index, value in self.frame_entries(pfn)}

    def frame_entries(self, pfn: int, first: int = 0, last: int = _WORDS_PER_FRAME) -> list[tuple[int, int]]:
        """The non-zero words of frame ``pfn`` with index ``first .. last-1`` as ``(index, value)`` in index order
        (``index`` = offset / 8); by default the whole frame.

        On a little-endian host the zero words are skipped in C (``compress`` over a ``Q`` view of the indexes
        asked for, so a walk of one page reads one word of each table, not all 512).
        """
        frame = self._frames.get(pfn)
        if frame is None or first >= last:
            return []
        if not _NATIVE_LITTLE:
            part = frame[first * 8 : last * 8]
            return [(first + i, value) for i, (value,) in enumerate(_WORD.iter_unpack(part)) if value]
        with memoryview(frame) as raw, raw.cast("Q") as words, words[first:last] as span:
            return [(i, words[i]) for i in compress(range(first, last), span)]
