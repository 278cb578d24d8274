"""The model's own run of a live OOM case: its memory cgroup, faulting in the same pages, chooses the victims.

:func:`oracles.linux.oom.check` asks the model to choose a victim from the kernel's own task table at each
OOM.  This module asks more: the model runs the case itself (:func:`model_run`), as the oracle's processes
ran it on the kernel (:func:`oracles.linux.oom.run_in`): a v1 memory group with ``memory.limit_in_bytes`` of
the case's limit; each idle process spawned, moved into the group, given its ``oom_score_adj``, then storing
to each of its pages (``oom_hog`` joins the group before it touches a page, so its pages are charged there);
then the offender storing to one page after another until it has touched ``grow`` pages or is killed.  The
group's OOM killer (:mod:`spec.memcg.memcg`, mm/memcontrol.c ``mem_cgroup_oom``) runs whenever a store would
take the group past its limit; the victims, in order, as indices into the case's processes (the offender
last), must be the kernel's (:func:`compare`).

What the model leaves out, and why the comparison still holds away from near ties: the kernel's processes
also hold the pages of the hog's executable (the same ``rss_file`` in each, charged to whichever group read
them first), their stacks and kernel memory (a few dozen pages charged to the group in all), and page tables
of their own layout; the model holds only the stored pages and the tables they need.  The offsets are
nearly equal across the processes, so the highest badness is the same process unless two are within a few
dozen pages (the generator keeps apart the idle ones, not the offender at the moment the group fills).
Reclaim inside a group is not modelled, so a case with swap (where the kernel swaps the group's pages out
before it kills) is not compared (:func:`comparable`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lang.errors import InvalidArgument
from lang.kernel_ops import Mmap, Spawn, Store, Switch
from lang.memcg_ops import MemcgCreate, MemcgMove, MemcgSet
from lang.oom_ops import OomScoreAdj
from lang.scenario import Config, Result
from oracles.linux.oom import OomCase
from properties.drivers import SpecRunner

GROUP = "oomx"
REGION = 0x10000000
PAGE = 4096
SPARE_FRAMES = 1024
"""Frames beyond the group's limit: init's and the page tables' outside the group, so only the group runs out."""


@dataclass(frozen=True)
class ModelOom:
    """What the model did with a case: the victims in order (process indices, the offender last), and whether
    the offender's fault was left retrying for ever (nothing killable)."""

    victims: tuple[int, ...]
    stuck: bool


def comparable(case: OomCase) -> str | None:
    """Why the model's own run cannot be compared with the kernel's for ``case``, or None when it can."""
    if case.swap:
        return "with swap the kernel reclaims inside the group before it kills; the model has no group reclaim"
    return None


def model_run(case: OomCase) -> ModelOom:
    """Run ``case`` on the model (the L1 spec): the victims of the group's OOMs in order."""
    spec = SpecRunner(Config(frames=case.limit + SPARE_FRAMES, cpus=1, max_order=4, swap=0))
    spec.apply(Spawn())  # init, pid 1, in the root
    spec.apply(MemcgCreate(GROUP))
    spec.apply(MemcgSet(GROUP, "memory.limit_in_bytes", case.limit * PAGE))
    pids: list[int] = []
    victims: list[int] = []
    live: set[int] = set()

    def store(pid: int, page: int) -> Result:
        result = spec.apply(Store(0, REGION + page * PAGE, 1))
        for kill in result.get("memcg_oom", {}).get("kills", []):
            victims.append(pids.index(kill["pid"]))
            live.discard(kill["pid"])
        return result

    for pages, adj in (*case.tasks, (case.grow, case.offender_adj)):
        pid = spec.apply(Spawn())["pid"]
        pids.append(pid)
        live.add(pid)
        spec.apply(MemcgMove(pid, GROUP))
        spec.apply(OomScoreAdj(pid, adj))
        if pages:
            spec.apply(Mmap(pid, REGION, pages, "rw-", False))
        if len(pids) <= len(case.tasks):  # an idle process touches its pages before the next one starts
            spec.apply(Switch(0, pid))
            for page in range(pages):
                store(pid, page)
    offender = pids[-1]
    spec.apply(Switch(0, offender))
    for page in range(case.grow):
        result = store(offender, page)
        if "memcg_retry" in result:
            return ModelOom(tuple(victims), True)
        if offender not in live:
            break
    return ModelOom(tuple(victims), False)


def compare(kernel_victims: list[int], kernel_stuck: bool, model: ModelOom) -> list[str]:
    """The differences between the kernel's victims (process indices, in order) and the model's own run's."""
    problems = []
    if list(model.victims) != kernel_victims:
        mine = list(model.victims)
        problems.append(f"the kernel killed processes {kernel_victims} in order, the model's own run {mine}")
    if model.stuck != kernel_stuck:
        side = "the kernel's" if kernel_stuck else "the model's"
        problems.append(f"only {side} offender was left retrying its fault")
    return problems


def kernel_record(case: OomCase, killed: list[int], stuck: bool, release: str) -> dict[str, object]:
    """One recorded kernel answer: the case, the victims the kernel killed in order (process indices) and
    whether its offender was left retrying, with the kernel's release."""
    return {"case": case.to_json(), "killed": killed, "stuck": stuck, "release": release}


def load_records(data: object) -> list[tuple[OomCase, list[int], bool]]:
    """The records :func:`kernel_record` wrote, under ``"records"`` of a JSON object; a malformed one is an
    InvalidArgument."""
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise InvalidArgument(f"recorded OOM answers are a JSON object with a records list, not {type(data).__name__}")
    out = []
    for n, item in enumerate(data["records"]):
        try:
            killed = [int(i) for i in item["killed"]]
            out.append((OomCase.from_json(item["case"]), killed, bool(item["stuck"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"record {n}: needs case, killed (process indices) and stuck ({exc!r})") from exc
    return out
