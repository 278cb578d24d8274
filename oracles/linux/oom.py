"""The live Linux kernel as an oracle for the OOM killer: the victims of a memory cgroup's OOM, in order.

A case (:class:`OomCase`) is a cgroup v1 memory group with a small ``memory.limit_in_bytes``, with or
without a swap file, holding a few idle processes of chosen sizes and ``oom_score_adj`` values, and one
offender that then touches more pages than the group can hold.  The processes are ``oom_hog`` (C, beside
this module, compiled with gcc on first use): each joins the group before it touches anything, so its
pages are charged there (mm/memcontrol.c charges the faulting task's group).

What the kernel says is read from its own reports, not inferred:

- ``/proc/PID/oom_score`` and ``/proc/PID/status`` (VmRSS, VmSwap, VmPTE) of every process once all are
  ready and idle, with ``MemTotal`` and ``SwapTotal`` (``totalram_pages``, ``total_swap_pages``);
- every OOM the group has, from the kernel log (``/dev/kmsg``, read from the end as the case starts): the
  task table ``dump_tasks`` prints (mm/oom_kill.c ``dump_task``: rss, rss_anon, rss_file, rss_shmem,
  pgtables_bytes, swapents and oom_score_adj of each task, in the order ``mem_cgroup_scan_tasks`` visits
  them, which is the order ``select_bad_process`` evaluates them in), the ``oom-kill:constraint=...`` line
  naming the victim, and the ``Killed process`` line;
- the group's ``memory.oom_control`` (``oom_kill``, ``under_oom``) and ``memory.failcnt``;
- whether the offender's growth ends: with every process at -1000 nothing can be killed, and the kernel
  retries the faulting access for ever (mm/oom_kill.c ``pagefault_out_of_memory``), which shows here as an
  offender that never answers (``stuck``).

The model is then asked the same questions on the kernel's own inputs (:func:`check`): the oom_score of each
process from its status with the machine's totals (``spec.oom.badness.displayed_score``), and, at each OOM,
the victim ``select_bad_process`` picks from that OOM's task table with the group's domain
(``mem_cgroup_get_max``: ``spec.oom.badness.memcg_domain_total``).  Both must agree exactly: the table is
what the kernel itself computed the badness from, so no tolerance is needed.

Lowering ``oom_score_adj`` below 0 needs CAP_SYS_RESOURCE (fs/proc/base.c ``__set_oom_adj``); where the
oracle lacks it, a case with a negative value is skipped with that reason (:func:`negative_adj_refused`).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lang.errors import InvalidArgument, OracleError
from lang.scenario import read_bytes
from oracles.linux.host import PAGE, compiled
from oracles.linux.pressure_host import PressureHost
from spec.oom import badness as model

HOG_SOURCE = Path(__file__).resolve().parent / "oom_hog.c"
HOG_CFLAGS = ["-O2", "-Wall", "-Werror", "-static"]
KB_PER_PAGE = PAGE // 1024
REPLY_TIMEOUT = float(os.environ.get("MMCHECK_LINUX_TIMEOUT", "20"))
DUMP_TASKS = Path("/proc/sys/vm/oom_dump_tasks")
# oom_kill_process prints the header and task table only within ``oom_rs``, a ratelimit of
# DEFAULT_RATELIMIT_BURST (10) per DEFAULT_RATELIMIT_INTERVAL (5 s) (mm/oom_kill.c; include/linux/ratelimit_types.h).
RATELIMIT_BURST, RATELIMIT_INTERVAL = 10, 5.0
OOM_TIMES: deque[float] = deque()


# --- the case --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OomCase:
    """A memory group of ``limit`` pages (swap on or off), idle ``tasks`` of (pages, oom_score_adj), and an
    offender with ``offender_adj`` that touches ``grow`` pages once they are all ready.  With
    ``kill_disable`` the group's ``oom_kill_disable`` is set first: the offender must then wait in its fault,
    the group ``under_oom``, with no process killed, until the flag is cleared again."""

    limit: int
    swap: bool
    tasks: tuple[tuple[int, int], ...]
    offender_adj: int
    grow: int
    kill_disable: bool = False

    def __post_init__(self) -> None:
        for pages, adj in (*self.tasks, (0, self.offender_adj)):
            if pages < 0:
                raise InvalidArgument(f"a task's pages must be 0 or more, not {pages}")
            if not model.OOM_SCORE_ADJ_MIN <= adj <= model.OOM_SCORE_ADJ_MAX:
                raise InvalidArgument(f"oom_score_adj must be in -1000..1000, not {adj}")
        if self.limit <= 0 or self.grow <= 0:
            raise InvalidArgument(f"limit and grow must be positive pages, not {self.limit} and {self.grow}")

    @property
    def adjs(self) -> tuple[int, ...]:
        """Every process's oom_score_adj, the offender last."""
        return (*(adj for _, adj in self.tasks), self.offender_adj)

    def to_json(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "swap": self.swap,
            "tasks": [list(t) for t in self.tasks],
            "offender_adj": self.offender_adj,
            "grow": self.grow,
            "kill_disable": self.kill_disable,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OomCase:
        """The case ``to_json`` wrote; a missing or mistyped field is an InvalidArgument naming what is needed."""
        try:
            return cls(
                int(data["limit"]),
                bool(data["swap"]),
                tuple((int(p), int(a)) for p, a in data["tasks"]),
                int(data["offender_adj"]),
                int(data["grow"]),
                bool(data.get("kill_disable", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"not an OOM case ({exc!r}): needs limit, swap, tasks (a list of [pages, oom_score_adj]),"
                " offender_adj, grow, and optionally kill_disable"
            ) from exc

    def describe(self) -> str:
        tasks = ", ".join(f"{pages} pages adj {adj}" for pages, adj in self.tasks)
        swap = "with swap" if self.swap else "without swap"
        disable = ", oom_kill_disable" if self.kill_disable else ""
        return f"limit {self.limit} pages {swap}{disable}: {tasks}; offender adj {self.offender_adj} grows {self.grow}"


def load_case(path: str | Path) -> OomCase:
    """Read an OOM case file (``-``: standard input) as the oracle's tests save one."""
    where = "<stdin>" if str(path) == "-" else str(path)
    try:
        data = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{where}: not a JSON OOM case ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: an OOM case is a JSON object, not {type(data).__name__}")
    return OomCase.from_json(data)


def negative_adj_refused() -> str | None:
    """Why a negative oom_score_adj cannot be set here (no CAP_SYS_RESOURCE), or None when it can."""
    path = Path("/proc/self/oom_score_adj")
    old = path.read_text().strip()
    try:
        path.write_text("-1")
    except OSError as exc:
        return f"oom_score_adj below 0 needs CAP_SYS_RESOURCE, which this process lacks ({exc.strerror})"
    path.write_text(old)
    return None


# --- the kernel's log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRow:
    """One line of ``dump_tasks``' table (memory values in pages, page tables in bytes)."""

    pid: int
    rss: int
    anon: int
    file: int
    shmem: int
    pgtables_bytes: int
    swapents: int
    adj: int


@dataclass(frozen=True)
class OomEvent:
    """One OOM: its constraint and group, the task table in scan order, and the victim named."""

    constraint: str
    memcg: str
    tasks: tuple[TaskRow, ...]
    victim: int


ROW = re.compile(r"\[\s*(\d+)\]\s+\d+\s+\d+\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+\S")
KILL = re.compile(r"oom-kill:constraint=(\w+),.*?oom_memcg=([^,]*),.*,task=.*?,pid=(\d+),uid=\d+")


def parse_log(messages: Iterable[str]) -> list[OomEvent]:
    """The OOMs in kernel log messages (the text after ``;`` of a /dev/kmsg record, or dmesg's text).

    A table starts at ``Tasks state``; its rows are ``dump_task`` lines; the ``oom-kill:`` line that follows
    ends it and names the victim.  A table with no such line (a log cut short) is dropped."""
    events: list[OomEvent] = []
    rows: list[TaskRow] | None = None
    for message in messages:
        if "Tasks state (memory values in pages)" in message:
            rows = []
        elif rows is not None and (row := ROW.search(message)):
            pid, rss, anon, file, shmem, pgtables, swapents, adj = (int(g) for g in row.groups())
            rows.append(TaskRow(pid, rss, anon, file, shmem, pgtables, swapents, adj))
        elif rows is not None and (kill := KILL.search(message)):
            events.append(OomEvent(kill.group(1), kill.group(2), tuple(rows), int(kill.group(3))))
            rows = None
    return events


class KernelLog:
    """``/dev/kmsg`` from now on: :meth:`messages` returns the text of every record written since."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def messages(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                return out
            except BrokenPipeError:  # records overwritten before they were read: skip to what remains
                continue
            out.append(record.decode(errors="replace").split(";", 1)[-1].split("\n", 1)[0])

    def close(self) -> None:
        os.close(self.fd)


# --- one run ---------------------------------------------------------------------------------------


def build_hog() -> Path:
    """The hog as a static executable, compiled once per source version."""
    return compiled(HOG_SOURCE, HOG_CFLAGS, "oom_hog", "the OOM hog")


@dataclass
class KernelOom:
    """What the kernel did with one case.  Processes are named by their index in the case (the offender
    last); ``pids`` maps them to the real pids."""

    pids: list[int]
    scores: list[int]
    status: list[dict[str, int]]
    totalram: int
    total_swap: int
    swappiness: int
    events: list[OomEvent]
    killed: list[int]
    oom_kill: int
    failcnt: int
    under_oom_seen: bool | None = None
    stuck: bool = False

    def index(self, pid: int) -> int | None:
        return self.pids.index(pid) if pid in self.pids else None


def meminfo_pages(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0]) // KB_PER_PAGE
    raise OracleError(f"/proc/meminfo has no {name}")


def status_of(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmSwap", "VmPTE"):
            values[key] = int(value.split()[0])
    return values


def oom_control(cgroup: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (cgroup / "memory.oom_control").read_text().splitlines())}


class Hog:
    """One hog process and its reply pipe."""

    def __init__(self, exe: Path, tasks: Path, adj: int, pages: int) -> None:
        self.proc = subprocess.Popen(
            [str(exe), str(tasks), str(adj), str(pages)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def reply(self, timeout: float = REPLY_TIMEOUT) -> str | None:
        """The next line, or None if the process ended first."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise OracleError(f"the OOM hog {self.pid} did not answer in {timeout} s")
        line = self.proc.stdout.readline()
        return line.strip() or None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` every 20 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def pace(ooms: int) -> None:
    """Wait until ``ooms`` more OOMs fit in the kernel's ratelimit with every table printed: at most a burst in
    any interval, counting the OOMs of earlier cases (with half a second of slack)."""
    while True:
        now = time.monotonic()
        while OOM_TIMES and OOM_TIMES[0] < now - RATELIMIT_INTERVAL - 0.5:
            OOM_TIMES.popleft()
        if len(OOM_TIMES) + ooms <= RATELIMIT_BURST:
            return
        time.sleep(OOM_TIMES[0] + RATELIMIT_INTERVAL + 0.5 - now)


def run_case(case: OomCase) -> KernelOom:
    """Run ``case`` on the live kernel (root, cgroup v1, a swap file when ``case.swap``); everything is undone.

    A case has at most one OOM per process (each kills one), so it starts only once that many fit in the
    kernel's ratelimit (:func:`pace`); a kill logged without its table is an :class:`OracleError`."""
    pace(len(case.tasks) + 1)
    exe = build_hog()
    # The task table is what the victim is checked against; the host sets the sysctl under its machine-wide
    # lock and restores it after (or the next host does, when this run is killed).
    with PressureHost(limit=case.limit * PAGE, swap=case.swap, sysctls={DUMP_TASKS: "1"}) as host:
        return run_in(case, exe, host)


def run_in(case: OomCase, exe: Path, host: PressureHost) -> KernelOom:
    """Run ``case`` in ``host``'s cgroup."""
    if host.kind != "v1":
        raise OracleError("the OOM oracle needs the cgroup v1 memory controller (memory.oom_control)")
    tasks = host.cgroup / "tasks"
    log = KernelLog()
    hogs: list[Hog] = []
    try:
        for pages, adj in case.tasks:
            hogs.append(started(Hog(exe, tasks, adj, pages)))
        offender = started(Hog(exe, tasks, case.offender_adj, 0))
        hogs.append(offender)
        pids = [h.pid for h in hogs]
        scores = [int(Path(f"/proc/{pid}/oom_score").read_text()) for pid in pids]
        status = [status_of(pid) for pid in pids]
        totalram, total_swap = meminfo_pages("MemTotal"), meminfo_pages("SwapTotal")
        swappiness = int((host.cgroup / "memory.swappiness").read_text())
        under_oom_seen: bool | None = None
        if case.kill_disable:
            (host.cgroup / "memory.oom_control").write_text("1")
        offender.send(f"grow {case.grow}")
        if case.kill_disable:
            under_oom_seen = wait_until(lambda: oom_control(host.cgroup)["under_oom"] == 1, REPLY_TIMEOUT)
            if under_oom_seen:
                time.sleep(0.2)  # nothing may be killed while the flag is set: give a wrong kill time to show
            under_oom_seen = under_oom_seen and all(h.proc.poll() is None for h in hogs)
            (host.cgroup / "memory.oom_control").write_text("0")
        stuck = False
        try:
            offender.reply()  # "grown", or None when the offender itself was killed
        except OracleError:
            stuck = True  # still in its fault: with nothing killable the kernel retries it for ever
        for hog in hogs:
            if hog is not offender and hog.proc.poll() is None:
                hog.send("grow 0")  # a round trip: a hog killed a moment ago has exited by its reply
                hog.reply()
        control = oom_control(host.cgroup)
        failcnt = int((host.cgroup / "memory.failcnt").read_text())
        messages = log.messages()
        events = parse_log(messages)
        OOM_TIMES.extend([time.monotonic()] * len(events))
        kills = sum("Killed process" in m for m in messages)
        if kills != len(events):
            raise OracleError(f"{kills} kills logged but {len(events)} task tables: the log was ratelimited")
        killed = [pids.index(e.victim) for e in events if e.victim in pids]
        return KernelOom(
            pids,
            scores,
            status,
            totalram,
            total_swap,
            swappiness,
            events,
            killed,
            control["oom_kill"],
            failcnt,
            under_oom_seen,
            stuck,
        )
    finally:
        for hog in hogs:
            hog.stop()
        log.close()


def started(hog: Hog) -> Hog:
    line = hog.reply()
    if line is None or not line.startswith("ready"):
        hog.stop()
        raise OracleError(f"an OOM hog did not start: exit {hog.proc.returncode}")
    return hog


# --- the comparison --------------------------------------------------------------------------------


@dataclass
class OomVerdict:
    """The model's answers next to the kernel's, for one case."""

    case: OomCase
    kernel: KernelOom
    scores: list[tuple[int, int, int]]  # (process, kernel, model)
    victims: list[tuple[int | None, int | None]]  # per OOM: (kernel's victim, model's), as process indices
    problems: list[str]

    @property
    def agree(self) -> bool:
        return not self.problems


def check(case: OomCase, kernel: KernelOom) -> OomVerdict:
    """The model's oom_score of every process and its victim at every OOM, on the kernel's inputs."""
    problems: list[str] = []
    totalpages = kernel.totalram + kernel.total_swap
    scores: list[tuple[int, int, int]] = []
    for i, (adj, st, got) in enumerate(zip(case.adjs, kernel.status, kernel.scores, strict=True)):
        points = model.badness_of(
            st["VmRSS"] // KB_PER_PAGE, st.get("VmSwap", 0) // KB_PER_PAGE, st["VmPTE"] // KB_PER_PAGE, adj, totalpages
        )
        want = model.displayed_score(points, totalpages)
        scores.append((i, got, want))
        if got != want:
            problems.append(f"process {i}: /proc/PID/oom_score {got}, the model {want}")
    memsw = 1 << 62  # memsw.limit_in_bytes is left unlimited
    domain = model.memcg_domain_total(case.limit, memsw, kernel.total_swap, kernel.swappiness)
    victims: list[tuple[int | None, int | None]] = []
    for n, event in enumerate(kernel.events):
        if event.constraint != "CONSTRAINT_MEMCG":
            problems.append(f"OOM {n + 1} has constraint {event.constraint}, not the group's")
        chosen = model.chosen_victim(
            (row.pid, model.badness_of(row.rss, row.swapents, row.pgtables_bytes // PAGE, row.adj, domain))
            for row in event.tasks
        )
        pair = (kernel.index(event.victim), None if chosen is None else kernel.index(chosen[0]))
        victims.append(pair)
        if chosen is None or chosen[0] != event.victim:
            problems.append(f"OOM {n + 1}: the kernel killed process {pair[0]}, the model would kill {pair[1]}")
    killable = any(adj != model.OOM_SCORE_ADJ_MIN for adj in case.adjs)
    if kernel.stuck == killable:
        state = "never finished its fault" if kernel.stuck else "finished"
        problems.append(f"the offender {state}, but {'some' if killable else 'no'} process is killable")
    if kernel.oom_kill != len(kernel.events):
        problems.append(f"memory.oom_control counts {kernel.oom_kill} kills, the log shows {len(kernel.events)}")
    if case.kill_disable and not kernel.under_oom_seen:
        problems.append("with oom_kill_disable the group was never seen under_oom with every process alive")
    return OomVerdict(case, kernel, scores, victims, problems)


# The seed's tiers that can be set without CAP_SYS_RESOURCE: a cache at 1000, a batch job at 500, a service at 0.
EXAMPLE = OomCase(4096, False, ((1024, 0), (512, 500), (256, 1000)), 0, 12288)


def report(verdict: OomVerdict) -> list[str]:
    """The comparison as lines: each process's oom_score, each OOM's victim on both sides, then the verdict."""
    lines = [verdict.case.describe()]
    lines += [f"  process {i}: oom_score kernel {got}, model {want}" for i, got, want in verdict.scores]
    lines += [
        f"  OOM {n + 1}: the kernel killed process {kernel}, the model chooses {chosen}"
        for n, (kernel, chosen) in enumerate(verdict.victims)
    ]
    lines += ["the model agrees with the kernel"] if verdict.agree else [f"DISAGREES: {p}" for p in verdict.problems]
    return lines
