"""A hardware-style page walker over simulated physical memory.

One pass per access, on plain integers: the canonical check, one entry read
per level, reserved-bit masks precomputed per CPU, rights folded into three
bits, and the accessed/dirty writes done the way QEMU's TCG walker does them
(A on each non-leaf entry as soon as it is validated; A, and D for a write,
on the leaf only when the access is allowed).  Intel SDM Vol. 3A 4.5-4.8.
"""

from __future__ import annotations

from impl.paging.physmem import FRAME_SIZE, PhysMem
from impl.paging.tlb import HUGE, NX, Tlb, U, W
from lang.errors import AddressError, UnknownCpu

READ, WRITE, FETCH = 0, 1, 2

_P, _RW, _US, _A, _D, _PS, _G = 1, 2, 4, 0x20, 0x40, 0x80, 0x100
_XD = 1 << 63
_MASK64 = (1 << 64) - 1
# Reserved low bits of large leaves: 20:13 in a 2 MiB PDE, 29:13 in a 1 GiB PDPTE.
_LARGE_RSVD = {2: ((1 << 21) - 1) & ~0x1FFF, 3: ((1 << 30) - 1) & ~0x1FFF}

VECTOR_GP, VECTOR_PF, VECTOR_MC = 13, 14, 18
# A TLB entry's W and U bits as the walker's R/W and U/S rights.
_RIGHTS = {0: 0, W: _RW, U: _US, W | U: _RW | _US}
_HUGE_OFFSET = (1 << 21) - 1


class Translated:
    """A successful access reaching physical address ``pa``.

    A walk also leaves what a TLB entry for it caches (SDM Vol. 3A 4.10.2.2):
    ``rights`` (R/W and U/S ANDed over the levels), ``no_exec`` (XD ORed over
    them) and the ``leaf`` entry (for its G flag).  A translation served from a
    TLB carries none of these (zero).
    """

    __slots__ = ("leaf", "no_exec", "pa", "rights")

    def __init__(self, pa: int, rights: int = 0, no_exec: int = 0, leaf: int = 0) -> None:
        self.pa = pa
        self.rights = rights
        self.no_exec = no_exec
        self.leaf = leaf

    def __repr__(self) -> str:
        return f"Translated(pa={self.pa:#x})"


class Fault:
    """An exception raised by the access: ``vector`` 14 (#PF), 13 (#GP) or 18 (machine check)."""

    __slots__ = ("error_code", "vector")

    def __init__(self, vector: int, error_code: int = 0) -> None:
        self.vector = vector
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"Fault(vector={self.vector}, error_code={self.error_code:#x})"


_GP = Fault(VECTOR_GP)
_MC = Fault(VECTOR_MC)


class Cpu:
    """One logical processor's paging controls."""

    __slots__ = ("ac", "cr3", "la57", "nxe", "smap", "smep", "wp")

    def __init__(self) -> None:
        self.cr3 = 0
        self.wp = self.smep = self.smap = self.ac = self.nxe = self.la57 = False


class Mmu:
    """Physical memory plus the CPUs that translate through it."""

    __slots__ = ("_addr_mask", "_high_rsvd", "cpus", "maxphyaddr", "mem")

    def __init__(self, mem: PhysMem, cpus: int, maxphyaddr: int = 46) -> None:
        self.mem = mem
        self.maxphyaddr = maxphyaddr
        self.cpus = [Cpu() for _ in range(cpus)]
        self._addr_mask = ((1 << maxphyaddr) - 1) & ~0xFFF
        self._high_rsvd = ((1 << 52) - 1) & ~((1 << maxphyaddr) - 1)

    def clone(self, mem: PhysMem) -> Mmu:
        """An independent copy of the CPUs' controls over ``mem`` (a clone of this memory)."""
        new = Mmu.__new__(Mmu)
        new.mem, new.maxphyaddr = mem, self.maxphyaddr
        new._addr_mask, new._high_rsvd = self._addr_mask, self._high_rsvd
        new.cpus = []
        for cpu in self.cpus:
            copied = Cpu()
            copied.cr3, copied.wp, copied.smep, copied.smap = cpu.cr3, cpu.wp, cpu.smep, cpu.smap
            copied.ac, copied.nxe, copied.la57 = cpu.ac, cpu.nxe, cpu.la57
            new.cpus.append(copied)
        return new

    def cpu(self, n: int) -> Cpu:
        """CPU ``n``, or :class:`UnknownCpu`."""
        if not 0 <= n < len(self.cpus):
            raise UnknownCpu(f"cpu {n} does not exist: allowed 0..{len(self.cpus) - 1}")
        return self.cpus[n]

    def set_cpu(self, n: int, *, cr3: int, wp: bool, smep: bool, smap: bool, ac: bool, nxe: bool, la57: bool) -> None:
        """Load CPU ``n``'s control bits; CR3 must be a frame inside memory."""
        cpu = self.cpu(n)
        if cr3 & 0xFFF or not 0 <= cr3 < self.mem.size:
            raise AddressError(
                f"cr3 {cr3:#x} must be a 4 KiB-aligned frame address inside memory "
                f"(0x0 .. {self.mem.size - FRAME_SIZE:#x})"
            )
        cpu.cr3, cpu.wp, cpu.smep, cpu.smap = cr3, wp, smep, smap
        cpu.ac, cpu.nxe, cpu.la57 = ac, nxe, la57

    def access(self, n: int, va: int, kind: int, user: bool) -> Translated | Fault:
        """Translate ``va`` for ``kind`` (READ, WRITE, FETCH) in user or supervisor mode."""
        cpu = self.cpu(n)
        if not 0 <= va <= _MASK64:
            raise AddressError(f"virtual address {va:#x} is not a 64-bit value")
        width = 57 if cpu.la57 else 48
        if ((va + (1 << (width - 1))) & _MASK64) >> width:
            return _GP
        mem = self.mem
        size = mem.size
        rsvd = self._high_rsvd | (0 if cpu.nxe else _XD)
        table = cpu.cr3
        rights = _RW | _US
        no_exec = 0
        shift = width - 9
        level = 5 if cpu.la57 else 4
        while True:
            entry_pa = table + ((va >> shift) & 0x1FF) * 8
            if entry_pa >= size:
                return _MC
            entry = mem.read_unchecked(entry_pa)
            if not entry & _P:
                return Fault(VECTOR_PF, self._code(cpu, kind, user, 0))
            if level >= 4:
                bad = rsvd | _PS
            elif level > 1 and entry & _PS:
                bad = rsvd | _LARGE_RSVD[level]
            else:
                bad = rsvd
            if entry & bad:
                return Fault(VECTOR_PF, self._code(cpu, kind, user, 0b1001))
            rights &= entry
            no_exec |= entry >> 63
            if level == 1 or entry & _PS:
                if not self._allowed(cpu, rights, no_exec, kind, user):
                    return Fault(VECTOR_PF, self._code(cpu, kind, user, 1))
                update = _A | _D if kind == WRITE else _A
                if entry & update != update:
                    mem.write_unchecked(entry_pa, entry | update)
                offset_mask = (1 << shift) - 1
                pa = ((entry & self._addr_mask & ~offset_mask) | (va & offset_mask))
                return Translated(pa, rights, no_exec, entry)
            if not entry & _A:
                mem.write_unchecked(entry_pa, entry | _A)
            table = entry & self._addr_mask
            shift -= 9
            level -= 1

    def translate(self, n: int, va: int, kind: int, user: bool, tlb: Tlb, pcid: int) -> Translated | Fault:
        """:meth:`access` through ``tlb`` in ``pcid``: a load or fetch that hits uses the cached entry, no walk.

        A hit is checked against the rights the entry cached (SDM Vol. 3A
        4.10.2.2: a TLB entry holds the rights combined over the walk); a hit
        that does not allow the access is a protection #PF.  A miss walks and
        fills the TLB with the translation of the 4 KiB page of ``va`` (a
        large page may be cached as 4 KiB fragments, SDM 4.10.2.3), global
        when the leaf has G (CR4.PGE=1).  Either #PF drops the entries for
        ``va`` (SDM 4.10.4.1).  These entries do not cache the dirty flag, so an
        allowed write walks to set D in the leaf as SDM 4.8 requires.  A 2 MiB
        entry (:data:`impl.paging.tlb.HUGE`, as the kernel's CPUs fill them) translates
        every page of its 2 MiB.
        """
        vpn = va >> 12
        code = tlb.lookup(pcid, vpn)
        if code is not None:
            cpus = self.cpus
            cpu = cpus[n] if 0 <= n < len(cpus) else self.cpu(n)
            if kind == READ:  # the data-read rule of :meth:`_allowed`, inline for the common case
                allowed = code & U if user else not (code & U and cpu.smap and not cpu.ac)
            else:
                allowed = self._allowed(cpu, _RIGHTS[code & (W | U)], code & NX, kind, user)
            if not allowed:
                tlb.fault(pcid, vpn)
                return Fault(VECTOR_PF, self._code(cpu, kind, user, 1))
            if kind != WRITE:
                if code & HUGE:
                    return Translated((((code & ~HUGE) >> 4) << 12) | (va & _HUGE_OFFSET))
                return Translated(((code >> 4) << 12) | (va & 0xFFF))
        outcome = self.access(n, va, kind, user)
        if isinstance(outcome, Translated):
            tlb.fill(pcid, vpn, self.tlb_code(outcome))
        elif outcome.vector == VECTOR_PF:
            tlb.fault(pcid, vpn)
        return outcome

    def load(self, n: int, va: int, user: bool, tlb: Tlb, pcid: int) -> int | Fault:
        """A 64-bit data read of ``va`` through ``tlb``: the word at the physical address :meth:`translate` gives,
        or its fault.  A 4 KiB hit that allows the read goes straight to memory (the common case); everything
        else is :meth:`translate`."""
        code = tlb.lookup(pcid, va >> 12)
        if code is not None and not code & HUGE:
            cpus = self.cpus
            cpu = cpus[n] if 0 <= n < len(cpus) else self.cpu(n)
            if code & U if user else not (code & U and cpu.smap and not cpu.ac):
                return self.mem.read(((code >> 4) << 12) | (va & 0xFFF))
        outcome = self.translate(n, va, READ, user, tlb, pcid)
        return self.mem.read(outcome.pa) if isinstance(outcome, Translated) else outcome

    @staticmethod
    def tlb_code(walk: Translated) -> int:
        """The TLB entry (:mod:`impl.paging.tlb` code) for the 4 KiB page of a successful walk.

        Its frame, the rights and XD the walk combined over every level, and G
        from the leaf (SDM Vol. 3A 4.10.2.2)."""
        rights = walk.rights
        bits = (W if rights & _RW else 0) | (U if rights & _US else 0) | (NX if walk.no_exec else 0)
        return (walk.pa >> 12) << 4 | bits | (1 if walk.leaf & _G else 0)

    @staticmethod
    def _allowed(cpu: Cpu, rights: int, no_exec: int, kind: int, user: bool) -> bool:
        us = rights & _US
        if user:
            if kind == READ:
                return bool(us)
            if kind == WRITE:
                return bool(us and rights & _RW)
            return bool(us) and not (no_exec and cpu.nxe)
        if kind == FETCH:
            return not (us and cpu.smep) and not (no_exec and cpu.nxe)
        if us and cpu.smap and not cpu.ac:
            return False
        return kind == READ or bool(rights & _RW) or not cpu.wp

    @staticmethod
    def _code(cpu: Cpu, kind: int, user: bool, base: int) -> int:
        code = base | (2 if kind == WRITE else 0) | (4 if user else 0)
        if kind == FETCH and (cpu.nxe or cpu.smep):
            code |= 0x10
        return code
