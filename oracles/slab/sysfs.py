"""The live kernel's slab caches, read from ``/sys/kernel/slab``, against the model's geometry.

Every directory of ``/sys/kernel/slab`` is one cache (``sysfs_slab_add`` in
mm/slub.c); a merged cache's other names are symlinks to it
(``sysfs_slab_alias``), so each real cache is counted once.  For each cache
the files ``object_size``, ``slab_size`` (``s->size``), ``align``,
``objs_per_slab`` and ``order`` (``oo``), ``min_partial`` and ``ctor`` give
what ``calculate_sizes`` computed at boot; the flag files ``red_zone``,
``poison``, ``store_user`` and ``destroy_by_rcu`` say whether a layout the
model does not describe applies.  The model's side is
``spec.slab.geometry.calculate_sizes`` (and the implementation's
``impl.slab.geometry.calculate_sizes``) with the kernel's own inputs: the
object size, the alignment it settled on, whether there is a constructor,
the present CPU count ``calculate_order`` uses, and ``slub_min_objects`` /
``slub_max_order`` from the kernel command line or their defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from impl.slab import geometry as impl_geometry
from spec.slab import geometry as spec_geometry

SLAB_ROOT = Path("/sys/kernel/slab")
CPU_ROOT = Path("/sys/devices/system/cpu")
CMDLINE = Path("/proc/cmdline")
PAGE_MAX_ORDER = 10  # MAX_PAGE_ORDER on x86-64
NUMBERS = ("object_size", "slab_size", "align", "objs_per_slab", "order", "min_partial")
# Debug flags that change the object layout (calculate_sizes: red zones, poison with a red zone word,
# the track records of SLAB_STORE_USER), and SLAB_TYPESAFE_BY_RCU, which moves the free pointer.
LAYOUT_FLAGS = {
    "red_zone": "red zones (SLAB_RED_ZONE) around each object",
    "poison": "poisoning (SLAB_POISON)",
    "store_user": "alloc/free tracking (SLAB_STORE_USER) after each object",
    "destroy_by_rcu": "SLAB_TYPESAFE_BY_RCU, which may move the free pointer out of the object",
}
# Compared field of the kernel -> field of the model's geometry.
COMPARED = {
    "slab_size": "size",
    "align": "align",
    "objs_per_slab": "objects",
    "order": "order",
    "min_partial": "min_partial",
}


class SysfsError(Exception):
    """A cache directory lacks a file the comparison needs, or holds something unreadable."""


@dataclass(frozen=True, slots=True)
class KernelCache:
    """One cache as sysfs shows it; ``aliases`` the names (symlinks) merged into it."""

    name: str
    numbers: Mapping[str, int]
    ctor: bool
    flags: Mapping[str, bool]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Params:
    """The inputs of ``calculate_order`` that are the same for every cache."""

    cpus: int
    slub_min_objects: int = 0
    slub_max_order: int = spec_geometry.SLUB_MAX_ORDER


@dataclass(frozen=True, slots=True)
class Outcome:
    """The comparison of one cache: ``reason`` set when the model cannot express it, else the differences
    of the spec (``spec``) and of the implementation (``impl``), field -> (kernel, model)."""

    cache: KernelCache
    reason: str | None = None
    spec: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    impl: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    impl_skipped: str | None = None

    @property
    def agrees(self) -> bool:
        return self.reason is None and not self.spec and not self.impl


@dataclass(frozen=True, slots=True)
class Report:
    params: Params
    outcomes: Sequence[Outcome]

    @property
    def expressible(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.reason is None]

    @property
    def agree(self) -> bool:
        return all(o.agrees for o in self.expressible)

    def summary(self) -> str:
        good = sum(o.agrees for o in self.expressible)
        return (
            f"agree {good} of {len(self.expressible)} expressible, "
            f"{len(self.outcomes) - len(self.expressible)} not expressible"
        )

    def render(self) -> list[str]:
        p = self.params
        lines = [
            f"{len(self.outcomes)} caches in /sys/kernel/slab; cpus {p.cpus}, slub_min_objects {p.slub_min_objects}, "
            f"slub_max_order {p.slub_max_order}",
        ]
        for o in self.expressible:
            for side, diffs in (("spec", o.spec), ("impl", o.impl)):
                if diffs:
                    what = ", ".join(f"{k} kernel {a} model {b}" for k, (a, b) in sorted(diffs.items()))
                    lines.append(f"disagree {side} {o.cache.name}: {what}")
        for o in self.outcomes:
            if o.reason is not None:
                lines.append(f"not expressible {o.cache.name}: {o.reason}")
        lines.append(self.summary())
        return lines


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SysfsError(f"{path}: {exc.strerror or exc}") from exc


def _number(directory: Path, name: str) -> int:
    text = _read(directory / name)
    first = text.split()[0] if text else ""
    try:
        return int(first)
    except ValueError:
        raise SysfsError(f"{directory / name}: not a number: {text!r}") from None


def read_cache(directory: Path, aliases: Sequence[str] = ()) -> KernelCache:
    """One cache directory.  ``ctor`` shows the constructor's symbol (``%pS``) or nothing; a flag file 1 or 0."""
    numbers = {name: _number(directory, name) for name in NUMBERS}
    ctor = bool(_read(directory / "ctor"))
    flags = {name: (directory / name).exists() and _number(directory, name) != 0 for name in LAYOUT_FLAGS}
    return KernelCache(directory.name, numbers, ctor, flags, tuple(sorted(aliases)))


def read_caches(root: Path = SLAB_ROOT) -> list[KernelCache]:
    """Every real cache under ``root``, by name; symlinks are aliases of the cache they point to."""
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    aliases: dict[str, list[str]] = {}
    for entry in entries:
        if entry.is_symlink():
            aliases.setdefault(Path(os.readlink(entry)).name, []).append(entry.name)
    return [
        read_cache(entry, aliases.get(entry.name, ())) for entry in entries if entry.is_dir() and not entry.is_symlink()
    ]


def present_cpus(cpu_root: Path = CPU_ROOT) -> int:
    """``num_present_cpus()`` from ``present`` (``0-1,4``), else ``possible``, else ``os.cpu_count()``.

    ``calculate_order`` takes the present CPUs, or ``nr_cpu_ids`` if that is 1.
    """
    counts: dict[str, int] = {}
    for name in ("present", "possible"):
        try:
            text = (cpu_root / name).read_text().strip()
        except OSError:
            continue
        total = 0
        for part in filter(None, text.split(",")):
            low, _, high = part.partition("-")
            total += int(high or low) - int(low) + 1
        counts[name] = total
    present = counts.get("present", 0)
    if present <= 1:
        present = counts.get("possible", present)
    return present or os.cpu_count() or 1


def cmdline_params(cmdline: str, cpus: int) -> Params:
    """``slub_min_objects=`` and ``slub_max_order=`` (or their ``slab_`` names) from a kernel command line."""
    min_objects, max_order = 0, spec_geometry.SLUB_MAX_ORDER
    for word in cmdline.split():
        if word == "--":
            break
        key, _, value = word.partition("=")
        if key in ("slub_min_objects", "slab_min_objects") and value.isdigit():
            min_objects = int(value)
        elif key in ("slub_max_order", "slab_max_order") and value.isdigit():
            max_order = min(int(value), PAGE_MAX_ORDER)
    return Params(cpus, min_objects, max_order)


def kernel_params(cpu_root: Path = CPU_ROOT, cmdline: Path = CMDLINE) -> Params:
    try:
        text = cmdline.read_text()
    except OSError:
        text = ""
    return cmdline_params(text, present_cpus(cpu_root))


def not_expressible(cache: KernelCache) -> str | None:
    """Why the model cannot describe ``cache``'s layout, or None."""
    on = [LAYOUT_FLAGS[name] for name, set_ in cache.flags.items() if set_]
    if on:
        return "; ".join(on)
    align = cache.numbers["align"]
    if align < spec_geometry.ARCH_SLAB_MINALIGN or align & (align - 1):
        return f"alignment {align} is not a power of two of at least {spec_geometry.ARCH_SLAB_MINALIGN}"
    return None


def compare_cache(cache: KernelCache, params: Params) -> Outcome:
    """The spec's and the implementation's geometry for ``cache``'s inputs, against the kernel's numbers."""
    reason = not_expressible(cache)
    if reason is not None:
        return Outcome(cache, reason)
    n = cache.numbers
    spec = spec_geometry.calculate_sizes(
        n["object_size"],
        n["align"],
        cache.ctor,
        params.cpus,
        params.slub_min_objects,
        params.slub_max_order,
        PAGE_MAX_ORDER,
    )
    if spec is None:
        return Outcome(cache, f"object of {n['object_size']} bytes fits no slab up to order {PAGE_MAX_ORDER}")
    model = {
        "size": spec.size,
        "align": spec.align,
        "objects": spec.objects,
        "order": spec.order,
        "min_partial": spec.min_partial,
    }
    spec_diffs = {k: (n[k], model[v]) for k, v in COMPARED.items() if n[k] != model[v]}
    if n["object_size"] != spec.object_size:
        spec_diffs["object_size"] = (n["object_size"], spec.object_size)
    impl_diffs: dict[str, tuple[int, int]] = {}
    skipped = None
    if params.slub_max_order != impl_geometry.SLUB_MAX_ORDER:
        skipped = f"the implementation fixes slub_max_order at {impl_geometry.SLUB_MAX_ORDER}"
    else:
        layout = impl_geometry.calculate_sizes(
            n["object_size"], n["align"], cache.ctor, params.cpus, params.slub_min_objects, PAGE_MAX_ORDER
        )
        if layout is None:
            impl_diffs["order"] = (n["order"], -1)
        else:
            got = {
                "size": layout.size,
                "align": layout.align,
                "objects": layout.objects,
                "order": layout.order,
                "min_partial": layout.min_partial,
            }
            impl_diffs = {k: (n[k], got[v]) for k, v in COMPARED.items() if n[k] != got[v]}
    return Outcome(cache, None, spec_diffs, impl_diffs, skipped)


def compare(caches: Sequence[KernelCache], params: Params) -> Report:
    return Report(params, [compare_cache(cache, params) for cache in caches])


def unavailable(root: Path = SLAB_ROOT) -> str | None:
    """Why the live caches cannot be read here, or None."""
    try:
        names = [p for p in root.iterdir() if not p.is_symlink()]
    except OSError as exc:
        return f"{root} is not readable: {exc.strerror or exc}"
    if not names:
        return f"{root} has no caches"
    try:
        _read(names[0] / "ctor")
        _number(names[0], "object_size")
    except SysfsError as exc:
        return str(exc)
    return None


def live_report(root: Path = SLAB_ROOT, cpu_root: Path = CPU_ROOT, cmdline: Path = CMDLINE) -> Report:
    return compare(read_caches(root), kernel_params(cpu_root, cmdline))
