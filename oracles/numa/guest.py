"""A real multi-node Linux under QEMU as the oracle for NUMA placement: nodes, policies, migration, numastat.

Debian's kernel (the package ``linux-image-amd64`` and the versioned
``linux-image-*-amd64`` it depends on, fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x`` into the cache, never into the repository) boots
under ``qemu-system-x86_64 -accel tcg`` with the requested topology: one
``-numa node`` per node with its CPUs and its own RAM backend, and ``-numa
dist`` for the distances.  Its initramfs holds one program, ``/init``
(``oracles/numa/init.c``, linked statically, NUMA calls through
``syscall(2)``), which runs a script of steps, prints one JSON object per line
on the second serial port (``ttyS1``; the kernel's console is ``ttyS0``) and
powers the machine off.  The program and its initramfs are built once per
source version and kernel version and cached beside the kernel.

Each :class:`Case` runs in a fresh child process, so it starts with the
default task policy and an empty address space; the steps are those of
``init.c`` (its header lists them with their system calls).  The script goes
in as a second, uncompressed cpio archive appended to the cached gzip one:
the kernel unpacks concatenated archives, compressed or not, one after the
other into the same rootfs (``init/initramfs.c``, ``unpack_to_rootfs``), an
uncompressed one only at an offset that is a multiple of 4, so the gzip one
is padded with zero bytes, which it skips.

Every mapping is made with ``MADV_NOHUGEPAGE``, so each page of a region is
its own 4 KiB folio and ``move_pages`` reports and moves pages one by one.

What the kernel answers is returned as data (:class:`Run`); a failing system
call in the guest is an answer too (``{"errno": 22, "error": "EINVAL"}``).
What cannot be asked raises: :class:`~lang.errors.ConfigError` for a topology
QEMU cannot build, :class:`~lang.errors.OracleUnsupported` for a step the
program does not run, :class:`~lang.errors.OracleUnavailable` when QEMU, gcc
or the kernel package cannot be had, :class:`~lang.errors.OracleError` when the
guest fails, the topology it reports is not the one asked for, or it does not
power off within the timeout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lang.errors import ConfigError, OracleError, OracleUnavailable, OracleUnsupported
from oracles.qemu.oracle import QEMU, cache_root

GUEST_DIR = Path(__file__).resolve().parent
SOURCE = GUEST_DIR / "init.c"
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror")
PACKAGE = "linux-image-amd64"
APPEND = "console=ttyS0 quiet panic=-1 rdinit=/init"

MODES = ("default", "preferred", "bind", "interleave", "local", "preferred_many")
MODE_FLAGS = ("static", "relative")
MBIND_FLAGS = ("strict", "move", "move_all")
MAX_NODES = 64
MAX_REGIONS = 16
MAX_PAGES = 65536
NUMASTAT_FIELDS = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")


def cache_folder() -> Path:
    """Where the kernel and the initramfs go: ``numa-oracle/`` in the QEMU oracles' cache."""
    return cache_root() / "numa-oracle"


def missing_tools() -> str | None:
    """Why the oracle cannot run here (a missing program), or None when it can."""
    hints = {
        QEMU: "apt-get install qemu-system-x86",
        "gcc": "apt-get install gcc libc6-dev",
        "apt-cache": "a Debian or Ubuntu system to fetch linux-image-amd64",
        "apt-get": "a Debian or Ubuntu system to fetch linux-image-amd64",
        "dpkg-deb": "apt-get install dpkg",
    }
    for tool, hint in hints.items():
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH ({hint})"
    return None


def _run_tool(command: Sequence[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, check=False, cwd=cwd, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OracleUnavailable(f"{what}: {' '.join(command)}: {exc}") from None
    if done.returncode:
        raise OracleUnavailable(f"{what}: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def kernel_package() -> str:
    """The versioned package ``linux-image-amd64`` depends on (``apt-cache depends``): linux-image-6.1.0-57-amd64."""
    out = _run_tool(["apt-cache", "depends", PACKAGE], f"finding the kernel package {PACKAGE} depends on")
    found = re.findall(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b", out)
    if not found:
        raise OracleUnavailable(f"apt-cache depends {PACKAGE} names no linux-image-<version>-amd64: {out.strip()!r}")
    return str(found[0])


@dataclass(frozen=True, slots=True)
class Kernel:
    """A kernel unpacked in the cache: its version (``uname -r`` in the guest), its bzImage, and the image QEMU boots.

    ``boot`` is the uncompressed ELF ``vmlinux`` taken out of the bzImage when
    it carries the PVH entry note, which QEMU boots directly (no decompression
    under TCG: about 5 s a boot instead of 10 here), else the bzImage itself.
    """

    version: str
    vmlinuz: Path
    boot: Path


def elf_has_pvh_entry(elf: bytes) -> bool:
    """True when an ELF64 image has the Xen note ``XEN_ELFNOTE_PHYS32_ENTRY`` (18) that PVH boot enters through.

    Linux: ``include/xen/interface/elfnote.h``; the note is emitted by
    ``arch/x86/platform/pvh/head.S`` (``CONFIG_PVH``).
    """
    if elf[:5] != b"\x7fELF\x02":
        return False
    phoff, phentsize, phnum = int.from_bytes(elf[0x20:0x28], "little"), elf[0x36], elf[0x38]
    for index in range(phnum):
        header = elf[phoff + index * phentsize : phoff + (index + 1) * phentsize]
        if int.from_bytes(header[0:4], "little") != 4:  # PT_NOTE
            continue
        offset, size = int.from_bytes(header[8:16], "little"), int.from_bytes(header[32:40], "little")
        pos, end = offset, offset + size
        while pos + 12 <= end:
            namesz, descsz, kind = (int.from_bytes(elf[pos + i : pos + i + 4], "little") for i in (0, 4, 8))
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and kind == 18:
                return True
            pos += 12 + namesz + (-namesz % 4) + descsz + (-descsz % 4)
    return False


def vmlinux_of(bzimage: bytes) -> bytes | None:
    """The ELF ``vmlinux`` inside a bzImage compressed with xz or gzip, or None for another format.

    The compressed kernel lies at ``payload_offset`` (0x248) past the setup
    sectors (``setup_sects`` at 0x1f1, 0 meaning 4), ``payload_length`` (0x24c)
    bytes long (``Documentation/arch/x86/boot.rst``, boot protocol 2.08+).
    """
    setup = ((bzimage[0x1F1] or 4) + 1) * 512
    offset, length = int.from_bytes(bzimage[0x248:0x24C], "little"), int.from_bytes(bzimage[0x24C:0x250], "little")
    payload = bzimage[setup + offset : setup + offset + length]
    try:
        if payload.startswith(b"\xfd7zXZ\0"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
    except (lzma.LZMAError, OSError, EOFError):
        return None
    return None


def boot_image(vmlinuz: Path) -> Path:
    """The image to boot for ``vmlinuz``: its PVH-bootable ``vmlinux`` (cached beside it), else ``vmlinuz`` itself."""
    vmlinux = vmlinuz.with_name(vmlinuz.name.replace("vmlinuz", "vmlinux", 1))
    refused = vmlinux.with_name(vmlinux.name + ".not-pvh")
    if vmlinux.exists():
        return vmlinux
    if refused.exists():
        return vmlinuz
    elf = vmlinux_of(vmlinuz.read_bytes())
    if elf is None or not elf_has_pvh_entry(elf):
        refused.touch()
        return vmlinuz
    partial = vmlinux.with_name(f"{vmlinux.name}.{os.getpid()}")
    partial.write_bytes(elf)
    os.replace(partial, vmlinux)
    return vmlinux


def kernel() -> Kernel:
    """Debian's current amd64 kernel, downloaded and unpacked into the cache on first use."""
    reason = missing_tools()
    if reason:
        raise OracleUnavailable(reason)
    package = kernel_package()
    version = package.removeprefix("linux-image-")
    folder = cache_folder() / "kernel" / version
    vmlinuz = folder / "boot" / f"vmlinuz-{version}"
    if vmlinuz.exists():
        return Kernel(version, vmlinuz, boot_image(vmlinuz))
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        work = Path(tmp)
        _run_tool(["apt-get", "download", package], f"downloading {package}", cwd=work)
        debs = sorted(work.glob(f"{package}_*.deb"))
        if not debs:
            raise OracleUnavailable(f"apt-get download {package} left no .deb in {work}")
        unpacked = work / "root"
        _run_tool(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], f"unpacking {debs[0].name}")
        image = unpacked / "boot" / f"vmlinuz-{version}"
        if not image.exists():
            raise OracleUnavailable(f"{debs[0].name} holds no boot/vmlinuz-{version}")
        (work / "kernel" / "boot").mkdir(parents=True)
        os.replace(image, work / "kernel" / "boot" / image.name)
        try:
            os.replace(work / "kernel", folder)
        except OSError:
            if not vmlinuz.exists():  # another process may have unpacked it meanwhile
                raise
    return Kernel(version, vmlinuz, boot_image(vmlinuz))


def cpio_newc(entries: Iterable[tuple[str, int, bytes, int]]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks (``init/initramfs.c``; ``cpio(5)``).

    Each entry is (name, mode, data, rdev) with ``rdev`` a ``(major << 8) | minor`` for device nodes.
    """
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % value for value in fields))
        out.write(encoded)
        pad()
        out.write(data)
        pad()
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Guest:
    """A kernel and the cached initramfs holding ``/init``."""

    kernel: Kernel
    initramfs: Path


def build() -> Guest:
    """The kernel and the initramfs, built once per kernel version and ``init.c`` version and cached."""
    image = kernel()
    digest = hashlib.sha256(" ".join(CFLAGS).encode() + SOURCE.read_bytes()).hexdigest()[:16]
    target = cache_folder() / f"{image.version}-{digest}" / "initramfs.cpio.gz"
    if target.exists():
        return Guest(image, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        binary = Path(tmp) / "init"
        step = ["gcc", *CFLAGS, "-o", str(binary), str(SOURCE)]
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode:
            raise OracleError(f"building the NUMA guest's /init failed: {' '.join(step)}\n{done.stderr}")
        archive = cpio_newc(
            [
                ("dev", 0o040755, b"", 0),
                ("dev/console", 0o020600, b"", (5 << 8) | 1),
                ("init", 0o100755, binary.read_bytes(), 0),
            ]
        )
        (Path(tmp) / "initramfs.cpio.gz").write_bytes(gzip.compress(archive, mtime=0))
        os.replace(Path(tmp) / "initramfs.cpio.gz", target)
    return Guest(image, target)


@dataclass(frozen=True, slots=True)
class Topology:
    """The machine QEMU builds: ``nodes`` nodes, each with ``cpus_per_node`` CPUs and ``mib_per_node`` MiB.

    CPUs are numbered node by node: node ``n`` holds CPUs ``n*cpus_per_node ..
    (n+1)*cpus_per_node - 1``.  ``distances`` is the full matrix (``-numa
    dist``; the ACPI SLIT, 10 on the diagonal) or empty for QEMU's default (10
    local, 20 remote).
    """

    nodes: int = 2
    cpus_per_node: int = 1
    mib_per_node: int = 256
    distances: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 8:
            raise ConfigError(f"nodes={self.nodes}: the NUMA oracle builds 1 to 8 nodes")
        if not 1 <= self.cpus_per_node <= 4 or self.nodes * self.cpus_per_node > 16:
            raise ConfigError(
                f"cpus_per_node={self.cpus_per_node}: 1 to 4 CPUs per node and at most 16 in all (TCG runs them)"
            )
        if not 64 <= self.mib_per_node <= 2048:
            raise ConfigError(f"mib_per_node={self.mib_per_node}: 64 to 2048 MiB per node")
        if self.distances:
            rows = self.distances
            if len(rows) != self.nodes or any(len(row) != self.nodes for row in rows):
                raise ConfigError(f"distances must be a {self.nodes}x{self.nodes} matrix, got {rows!r}")
            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    if i == j and value != 10:
                        raise ConfigError(f"distances[{i}][{i}]={value}: a node's distance to itself is 10 (ACPI SLIT)")
                    if i != j and not 11 <= value <= 254:
                        raise ConfigError(f"distances[{i}][{j}]={value}: a remote distance is 11 to 254 (ACPI SLIT)")

    @property
    def cpus(self) -> int:
        """CPUs in all."""
        return self.nodes * self.cpus_per_node

    def node_cpus(self, node: int) -> range:
        """The CPUs of ``node``."""
        return range(node * self.cpus_per_node, (node + 1) * self.cpus_per_node)

    def node_of_cpu(self, cpu: int) -> int:
        """The node ``cpu`` belongs to."""
        return cpu // self.cpus_per_node

    def matrix(self) -> tuple[tuple[int, ...], ...]:
        """The distance matrix the kernel should report (QEMU's default when none was given)."""
        if self.distances:
            return self.distances
        return tuple(tuple(10 if i == j else 20 for j in range(self.nodes)) for i in range(self.nodes))

    def qemu_args(self) -> list[str]:
        """QEMU's ``-smp``, ``-m``, memory backends, ``-numa node`` and ``-numa dist`` options."""
        args = ["-smp", f"{self.cpus},sockets={self.nodes},cores={self.cpus_per_node},threads=1"]
        args += ["-m", f"{self.nodes * self.mib_per_node}M"]
        for node in range(self.nodes):
            cpus = self.node_cpus(node)
            args += ["-object", f"memory-backend-ram,id=mem{node},size={self.mib_per_node}M"]
            args += ["-numa", f"node,nodeid={node},cpus={cpus.start}-{cpus.stop - 1},memdev=mem{node}"]
        if self.distances:
            for i, row in enumerate(self.distances):
                for j, value in enumerate(row):
                    if i != j:
                        args += ["-numa", f"dist,src={i},dst={j},val={value}"]
        return args


Step = Mapping[str, Any]


def _nodes_word(nodes: Sequence[int], where: str) -> str:
    if any(not isinstance(n, int) or not 0 <= n < MAX_NODES for n in nodes):
        raise OracleUnsupported(f"{where}: nodes {list(nodes)!r} must be node numbers 0..{MAX_NODES - 1}")
    return ",".join(str(n) for n in sorted(set(nodes))) or "-"


def _int(step: Step, key: str, where: str, low: int, high: int) -> int:
    value = step.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise OracleUnsupported(f"{where}: {key}={value!r} must be an integer {low}..{high}")
    return value


def _choice(step: Step, key: str, allowed: Sequence[str], where: str) -> str:
    value = step.get(key)
    if value not in allowed:
        raise OracleUnsupported(f"{where}: {key}={value!r} must be one of {', '.join(allowed)}")
    return str(value)


def _flags(step: Step, allowed: Sequence[str], where: str) -> list[str]:
    flags = step.get("flags", [])
    if not isinstance(flags, list) or any(f not in allowed for f in flags):
        raise OracleUnsupported(f"{where}: flags={flags!r} must be a list of {', '.join(allowed)}")
    return [str(f) for f in flags]


def step_line(step: Step, where: str, regions: dict[int, int]) -> str:
    """One step (a JSON object, ``{"op": ..., ...}``) as the line ``init.c`` reads; ``regions`` maps region to pages."""
    op = step.get("op")
    keys = {
        "set_mempolicy": {"op", "mode", "nodes", "flags"},
        "get_mempolicy": {"op"},
        "get_mempolicy_addr": {"op", "region", "page"},
        "node_of": {"op", "region", "page"},
        "mmap": {"op", "region", "pages"},
        "mbind": {"op", "region", "first", "count", "mode", "nodes", "flags"},
        "touch": {"op", "region", "page", "cpu"},
        "fill": {"op", "region", "first", "count", "cpu"},
        "where": {"op", "region"},
        "migrate": {"op", "region", "first", "count", "node"},
        "numastat": {"op"},
        "meminfo": {"op"},
    }
    if op not in keys:
        raise OracleUnsupported(f"{where}: op {op!r} is not one of {', '.join(keys)}")
    extra = set(step) - keys[op]
    if extra:
        raise OracleUnsupported(f"{where} ({op}): unknown keys {sorted(extra)}; allowed: {sorted(keys[op])}")
    where = f"{where} ({op})"
    if op == "mmap":
        region = _int(step, "region", where, 0, MAX_REGIONS - 1)
        if region in regions:
            raise OracleUnsupported(f"{where}: region {region} is already mapped")
        regions[region] = _int(step, "pages", where, 1, MAX_PAGES)
        return f"mmap {region} {regions[region]}"
    words = [str(op)]
    if "region" in step:
        region = _int(step, "region", where, 0, MAX_REGIONS - 1)
        if region not in regions:
            raise OracleUnsupported(f"{where}: region {region} is not mapped yet (mmap it first)")
        words.append(str(region))
        pages = regions[region]
        if "page" in step:
            words.append(str(_int(step, "page", where, 0, pages - 1)))
        if "first" in step or op in ("mbind", "migrate", "fill"):
            first = _int(step, "first", where, 0, pages - 1)
            count = _int(step, "count", where, 1, pages - first)
            words += [str(first), str(count)]
    if op in ("set_mempolicy", "mbind"):
        words.append(_choice(step, "mode", MODES, where))
        nodes = step.get("nodes", [])
        if not isinstance(nodes, list):
            raise OracleUnsupported(f"{where}: nodes={nodes!r} must be a list of node numbers")
        words.append(_nodes_word(nodes, where))
        words += _flags(step, MODE_FLAGS + (MBIND_FLAGS if op == "mbind" else ()), where)
    if op in ("touch", "fill"):
        words.append(str(_int(step, "cpu", where, 0, 1023)))
    if op == "migrate":
        words.append(str(_int(step, "node", where, 0, MAX_NODES - 1)))
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Case:
    """A named list of steps the guest runs in one fresh process."""

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise OracleUnsupported(f"case name {self.name!r}: 1 to 64 letters, digits, '_', '.' or '-'")


def script(cases: Sequence[Case]) -> str:
    """The guest's script for ``cases``: a ``case NAME`` line, then a line per step."""
    if not cases:
        raise OracleUnsupported("no cases: give at least one")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise OracleUnsupported(f"case names must differ: {names}")
    lines = []
    for case in cases:
        lines.append(f"case {case.name}")
        regions: dict[int, int] = {}
        lines += [step_line(step, f"{case.name}[{i}]", regions) for i, step in enumerate(case.steps)]
    return "\n".join(lines) + "\n"


@dataclass
class CaseRun:
    """What the kernel answered to one case: one JSON object per step, in order, and the child's exit status."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    exit: int | None = None

    def step(self, index: int) -> dict[str, Any]:
        """The answer to step ``index``; raises :class:`OracleError` when the guest gave none."""
        for answer in self.steps:
            if answer.get("step") == index:
                return answer
        raise OracleError(f"case {self.name}: the guest gave no answer to step {index} (exit {self.exit})")


@dataclass
class Run:
    """One boot: the topology the kernel found, each case's answers, and the wall time of the boot."""

    topology: dict[str, Any]
    cases: dict[str, CaseRun]
    seconds: float
    console: str

    @property
    def release(self) -> str:
        """The kernel's release, as ``uname -r`` reports it."""
        return str(self.topology["release"])


def numastat_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[int, dict[str, int]]:
    """Per node, how much each numastat counter grew between two ``numastat`` answers."""
    out: dict[int, dict[str, int]] = {}
    for node, counters in after["numastat"].items():
        old = before["numastat"][node]
        out[int(node)] = {name: int(counters[name]) - int(old[name]) for name in counters}
    return out


def check_topology(found: Mapping[str, Any], topology: Topology) -> None:
    """Raise :class:`OracleError` unless the kernel sees the nodes, CPUs, memory and distances asked for."""
    nodes = found.get("nodes", [])
    if [n["node"] for n in nodes] != list(range(topology.nodes)):
        raise OracleError(f"the kernel found nodes {[n['node'] for n in nodes]}, not 0..{topology.nodes - 1}")
    for entry, row in zip(nodes, topology.matrix(), strict=True):
        cpus = topology.node_cpus(entry["node"])
        expected = f"{cpus.start}-{cpus.stop - 1}" if len(cpus) > 1 else str(cpus.start)
        if entry["cpulist"] != expected:
            raise OracleError(f"node {entry['node']} has CPUs {entry['cpulist']!r}, not {expected!r}")
        if [int(d) for d in entry["distance"].split()] != list(row):
            raise OracleError(f"node {entry['node']} has distances {entry['distance']!r}, not {list(row)}")
        if not 0 < entry["memtotal_kb"] <= topology.mib_per_node * 1024:
            raise OracleError(
                f"node {entry['node']} has MemTotal {entry['memtotal_kb']} kB, not up to {topology.mib_per_node} MiB"
            )


def parse(lines: Iterable[str], console: str) -> tuple[dict[str, Any], dict[str, CaseRun]]:
    """The guest's JSON lines as the topology and the case answers; :class:`OracleError` if it did not finish."""
    topology: dict[str, Any] | None = None
    cases: dict[str, CaseRun] = {}
    done = False
    tail = "\n".join(console.splitlines()[-15:])
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise OracleError(f"the guest printed a line that is not JSON: {line!r}") from None
        if "fatal" in item:
            raise OracleError(f"the guest failed: {item['fatal']}")
        if "topology" in item:
            topology = item["topology"]
        elif item.get("done"):
            done = True
        elif "case" in item:
            run = cases.setdefault(item["case"], CaseRun(item["case"]))
            if "exit" in item:
                run.exit = item["exit"]
            else:
                run.steps.append(item)
    if topology is None or not done:
        raise OracleError(f"the guest did not run to its end; the console's last lines:\n{tail}")
    return topology, cases


def run(cases: Sequence[Case], topology: Topology | None = None, timeout: float = 600.0) -> Run:
    """Boot the kernel with ``topology`` (two nodes of one CPU and 256 MiB by default) and run ``cases`` in it."""
    topology = topology or Topology()
    text = script(cases)
    guest = build()
    with tempfile.TemporaryDirectory(prefix="mmcheck-numa-") as tmp:
        work = Path(tmp)
        initramfs = work / "initramfs.cpio"
        base = guest.initramfs.read_bytes()
        # The kernel takes a cpio archive after a compressed one only at an offset that is a multiple of 4
        # and skips zero bytes before it (init/initramfs.c, unpack_to_rootfs: ``!(this_header & 3)``).
        base += b"\0" * (-len(base) % 4)
        initramfs.write_bytes(base + cpio_newc([("script", 0o100644, text.encode(), 0)]))
        console, output = work / "console.txt", work / "output.txt"
        command = [
            QEMU,
            "-machine", "pc",
            "-accel", "tcg",
            *topology.qemu_args(),
            "-nodefaults",
            "-display", "none",
            "-no-reboot",
            "-serial", f"file:{console}",
            "-serial", f"file:{output}",
            "-kernel", str(guest.kernel.boot),
            "-initrd", str(initramfs),
            "-append", APPEND,
        ]  # fmt: skip
        start = time.monotonic()
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            tail = console.read_text(errors="replace")[-2000:] if console.exists() else ""
            raise OracleError(f"the NUMA guest did not power off within {timeout:.0f} s; console:\n{tail}") from None
        seconds = time.monotonic() - start
        log = console.read_text(errors="replace") if console.exists() else ""
        lines = output.read_text(errors="replace").splitlines() if output.exists() else []
    if done.returncode:
        raise OracleError(f"QEMU exited {done.returncode}: {done.stderr.strip()}")
    found, answers = parse(lines, log)
    for case in cases:
        answer = answers.get(case.name)
        if answer is None or answer.exit != 0:
            status = "no exit status" if answer is None else f"exit status {answer.exit}"
            last = answer.steps[-1] if answer and answer.steps else None
            raise OracleError(f"case {case.name}: the guest's process ended with {status}; its last answer: {last}")
    if found.get("release") != guest.kernel.version:
        raise OracleError(f"the guest runs kernel {found.get('release')!r}, not {guest.kernel.version!r}")
    check_topology(found, topology)
    return Run(found, answers, seconds, log)
