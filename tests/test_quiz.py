"""Generated exercises: reproducible by seed, and the spec's answers agree with the implementation."""

from __future__ import annotations

import pytest

from impl.alloc.buddy import BuddyAllocator
from lang.hardware_ops import AllocPages, FreePages
from lang.kernel_ops import Load, Step, Store
from mmcheck.cli import main
from mmcheck.views import quiz_buddy, quiz_buddyinfo, quiz_cow, quiz_faults, quiz_oom, quiz_tlb
from mmcheck.views.quiz import TOPICS, generate, quiz_json, render
from properties.drivers import ImplRunner, Lockstep
from properties.replay import replay

SEEDS = range(200)


@pytest.mark.parametrize("topic", TOPICS)
def test_same_seed_same_problem(topic: str) -> None:
    assert render(generate(topic, 11), answers=True) == render(generate(topic, 11), answers=True)
    assert render(generate(topic, 11), answers=False) != render(generate(topic, 12), answers=False)


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("seed", range(30))
def test_answers_agree_with_the_implementation(topic: str, seed: int) -> None:
    """Replaying a quiz's scenario in lockstep finds no divergence."""
    report = replay(generate(topic, seed).scenario)
    assert report.divergence is None, report.divergence


def test_cli_echoes_arguments_and_answers_each_question(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "permissions", "--seed", "3", "--questions", "4", "-c"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ["ARG topic permissions", "ARG seed 3", "ARG answers True"] == out[:3]
    assert 4 == sum(line.strip().startswith("answer:") for line in out)


def test_question_hides_the_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "answer:" not in out
    assert "-c" in out


def test_list_names_every_topic_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert list(TOPICS) == [line.split()[0] for line in out]


def test_unknown_topic_exits_2_naming_the_topics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "swap"]) == 2
    err = capsys.readouterr().err
    assert "unknown topic 'swap'" in err
    assert all(topic in err for topic in TOPICS)


@pytest.mark.parametrize("topic", ["buddy", "cow", "tlb", "faults", "buddyinfo"])
def test_new_topics_echo_arguments_and_work_the_answer(topic: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", topic, "--seed", "5", "--questions", "3"]) == 0
    question = capsys.readouterr().out
    assert main(["quiz", "--topic", topic, "--seed", "5", "--questions", "3", "-c"]) == 0
    worked = capsys.readouterr().out
    assert [f"ARG topic {topic}", "ARG seed 5", "ARG questions 3", "ARG answers False"] == question.splitlines()[:4]
    assert "answer:" not in question and "answer:" in worked
    assert question.splitlines()[5:8] == worked.splitlines()[5:8]


@pytest.mark.parametrize("seed", SEEDS)
def test_buddy_answers_are_what_the_implementation_does(seed: int) -> None:
    """Each op's pfn, free blocks after, and the last question, checked on impl.alloc.buddy run alone."""
    quiz = quiz_buddy.generate(seed)
    answer = quiz_buddy.solve(quiz)
    impl = BuddyAllocator(quiz.scenario.config.frames, quiz.scenario.config.max_order)
    for op in quiz.scenario.ops[: quiz.setup]:
        impl.alloc(op.order) if isinstance(op, AllocPages) else impl.free(op.pfn, op.order)
    for step in answer.steps:
        if isinstance(step.op, AllocPages):
            pfn = impl.alloc(step.op.order)
            assert step.pfn == pfn
            assert (pfn is None) == (not step.allowed)
            assert pfn is None or pfn in step.allowed
        else:
            assert isinstance(step.op, FreePages)
            impl.free(step.op.pfn, step.op.order)
            assert step.listed is not None and (step.listed.pfn, step.listed.order) in set(impl.free_blocks())
        assert {(b.pfn, b.order) for b in step.free_after} == set(impl.free_blocks())
    assert bool(answer.probe_allowed) == (impl.clone().alloc(answer.probe_order) is not None)


def impl_entry(runner: ImplRunner, cpu: int, va: int) -> tuple[int, int] | None:
    """(pfn, writable) of the entry the process on ``cpu`` has for ``va`` in the implementation, or None."""
    kernel = runner.kernel.kernel
    assert kernel is not None
    found = kernel._leaf_entry(kernel.procs[kernel.current[cpu]].root, va >> 12)
    if found is None or not found[1] & 1:
        return None
    return (found[1] & 0x000F_FFFF_FFFF_F000) >> 12, (found[1] >> 1) & 1


def impl_kind(old: tuple[int, int] | None, new: tuple[int, int] | None, zero: int, result: dict[str, object]) -> str:
    """The fault path read off the implementation's entry before and after an access."""
    if "signal" in result:
        return "SIGSEGV"
    if old is None:
        assert new is not None
        return "zero page" if new[0] == zero else "new page"
    if old == new:
        return "no fault"
    assert new is not None
    return "reuse" if old[0] == new[0] else "copy"


@pytest.mark.parametrize("seed", SEEDS)
def test_cow_answers_are_what_the_implementation_does(seed: int) -> None:
    """Each access's fault path and frame, the frames' counts and the stats, read off impl.mm.kernel run alone."""
    quiz = quiz_cow.generate(seed)
    answer = quiz_cow.solve(quiz)
    runner = ImplRunner(quiz.scenario.config)
    accesses = iter(answer.accesses)
    for index, op in enumerate(quiz.scenario.ops):
        asked = index >= quiz.setup and isinstance(op, Load | Store)
        old = impl_entry(runner, op.cpu, op.va) if asked else None  # type: ignore[attr-defined]
        result = runner.apply(op)
        if asked:
            assert isinstance(op, Load | Store)
            new = impl_entry(runner, op.cpu, op.va)
            expected = next(accesses)
            kernel = runner.kernel.kernel
            assert kernel is not None
            assert expected.kind == impl_kind(old, new, kernel.zero_pfn, result)
            assert expected.new_pfn == (None if new is None else new[0])
            assert dict(expected.result) == result
    kernel = runner.kernel.kernel
    assert kernel is not None
    counts = {pfn: (kernel.refcount[pfn], kernel.mapcount[pfn]) for pfn in range(kernel.buddy.frames)}
    assert {pfn: (c.refcount, c.mapcount) for pfn, c in answer.frames.items()} == {
        pfn: c for pfn, c in counts.items() if c[0]
    }
    assert {pid: kernel.stat(pid) for pid in (1, 2)} == {pid: dict(stat) for pid, stat in answer.stats.items()}


def test_cow_quizzes_cover_every_fault_path() -> None:
    """Over the seeds the tests use, every path the quiz asks about comes up (else the checks above miss one)."""
    kinds = {a.kind for seed in SEEDS for a in quiz_cow.solve(quiz_cow.generate(seed)).accesses}
    assert {"no fault", "zero page", "new page", "copy", "reuse"} <= kinds


@pytest.mark.parametrize("seed", SEEDS)
def test_tlb_answers_are_what_the_implementation_does(seed: int) -> None:
    """IPI targets, full or per-page flushes, the TLB entries held and the frames freed, read off impl.smp.shootdown."""
    quiz = quiz_tlb.generate(seed)
    answer = quiz_tlb.solve(quiz)
    runner = ImplRunner(quiz.scenario.config)
    for op in quiz.scenario.ops[: quiz.setup + 1]:
        result = runner.apply(op)
    smp = runner.kernel.smp
    assert smp is not None
    flight = smp.flights[result["pending"]]
    assert answer.targets == tuple(flight.targets)
    assert answer.full == flight.full
    for c in answer.cpus:
        held = {vpn for (_, vpn) in smp.tlbs[c.cpu].entries if answer.lo <= vpn < answer.hi}
        assert held <= set(c.may_use), f"cpu {c.cpu} holds {held}, the answer allows {c.may_use}"
    by_cpu = {c.cpu: c for c in answer.cpus}
    for op in quiz.scenario.ops[quiz.setup + 1 :]:
        assert isinstance(op, Step)
        result = runner.apply(op)
        if "stage" in result:
            cpu = result["cpu"]
            assert list(by_cpu[cpu].invlpg) == [v for kind, c, v in smp.events if kind == "invlpg" and c == cpu]
            assert by_cpu[cpu].flushed == any(kind == "flush" and c == cpu for kind, c, _ in smp.events)
        else:
            assert sorted(answer.freed) == sorted(v for kind, _, v in smp.events if kind == "free")


def test_tlb_quizzes_cover_full_and_page_flushes_lazy_skips_and_frees() -> None:
    """Over the seeds the tests use, each case the quiz teaches comes up at least once."""
    answers = [quiz_tlb.solve(quiz_tlb.generate(seed)) for seed in SEEDS]
    assert any(a.full and a.targets for a in answers)
    assert any(not a.full and a.targets for a in answers)
    assert any(c.lazy and c.cpu not in a.targets for a in answers for c in a.cpus)
    assert any(c.lazy and c.cpu in a.targets for a in answers for c in a.cpus)
    assert any(a.freed for a in answers)
    assert any(c.may_use and not c.in_mask for a in answers for c in a.cpus)


def impl_faults(runner: ImplRunner, pid: int) -> tuple[int, int]:
    """The implementation's minflt and majflt of ``pid`` (its /proc/PID/stat counters)."""
    kernel = runner.kernel.kernel
    assert kernel is not None
    status = kernel.pressure.status(pid)
    return status["minflt"], status["majflt"]


@pytest.mark.parametrize("seed", range(60))
def test_faults_answers_are_what_the_implementation_does(seed: int) -> None:
    """Each access's minor/major/no fault and result, and the final counters, as impl.mm.kernel run alone counts."""
    quiz = quiz_faults.generate(seed)
    answer = quiz_faults.solve(quiz)
    runner = ImplRunner(quiz.scenario.config)
    accesses = iter(answer.accesses)
    pid_on = {0: 1, 1: 2}
    for index, op in enumerate(quiz.scenario.ops):
        asked = index >= quiz.setup and isinstance(op, Load | Store)
        pid = pid_on[op.cpu] if asked else 0  # type: ignore[attr-defined]
        was = impl_faults(runner, pid) if asked else (0, 0)
        result = runner.apply(op)
        if asked:
            now = impl_faults(runner, pid)
            expected = next(accesses)
            assert expected.pid == pid
            assert dict(expected.result) == result
            assert (now[1] - was[1] == 1) == expected.major, expected
            assert (now == was) == (expected.kind == "no fault"), expected
    kernel = runner.kernel.kernel
    assert kernel is not None
    for pid, stat in answer.status.items():
        assert (stat["minflt"], stat["majflt"]) == impl_faults(runner, pid)
    assert dict(answer.vmstat) == kernel.pressure.vmstat()


def test_faults_quizzes_cover_every_reason() -> None:
    """Over the seeds, every kind of fault the quiz asks about comes up (else the check above misses one)."""
    kinds = {a.kind for seed in range(200) for a in quiz_faults.solve(quiz_faults.generate(seed)).accesses}
    assert set(quiz_faults.KINDS) - {"SIGSEGV", "SIGBUS"} <= kinds


def test_faults_answer_names_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quiz", "--topic", "faults", "--seed", "4", "-c"]) == 0
    out = capsys.readouterr().out
    assert "pid 1 anon page 1 (0x10001000): swapped out to slot 2" in out
    assert "answer: major: swap-in; reads 4" in out
    assert "filemap_fault reads it from disk (VM_FAULT_MAJOR)" in out


@pytest.mark.parametrize("seed", range(40))
def test_buddyinfo_answers_are_what_the_allocator_does(seed: int) -> None:
    """'Can order N succeed' is what the implementation, in lockstep with the spec, does after the setup."""
    quiz = quiz_buddyinfo.generate(seed)
    counts = quiz_buddyinfo.counts_of(quiz)
    for order in quiz_buddyinfo.asked_orders(quiz):
        lockstep = Lockstep(quiz.scenario.config)
        for op in quiz.scenario.ops[: quiz.setup]:
            lockstep.apply(op)
        assert ("pfn" in lockstep.apply(AllocPages(order))) == quiz_buddyinfo.answer(counts, order)["succeeds"]


def test_buddyinfo_quizzes_cover_success_compaction_and_no_compaction() -> None:
    answers = [
        quiz_buddyinfo.answer(quiz_buddyinfo.counts_of(q), order)
        for q in (quiz_buddyinfo.generate(seed) for seed in range(40))
        for order in quiz_buddyinfo.asked_orders(q)
    ]
    assert {True, False} == {a["succeeds"] for a in answers}
    assert {True, False} == {a["compaction"] for a in answers if not a["succeeds"]}


def test_buddyinfo_json_gives_the_counts_and_answers() -> None:
    out = quiz_json(generate("buddyinfo", 3), answers=True)
    assert 6 == len(out["buddyinfo"]) and all("answer" in q for q in out["questions"])


@pytest.mark.parametrize("seed", range(20))
def test_who_dies_kills_the_highest_and_never_an_immune_process(seed: int) -> None:
    """Each round's victim has the most points of the eligible; -1000 and init never die; with none left
    eligible the machine panics."""
    answer = quiz_oom.solve(generate("who-dies", seed))
    for r in answer.rounds:
        eligible = [(row.points, row.pid) for row in r.table if row.points is not None]
        kill = r.result.get("oom_kill")
        if not eligible:
            assert "panic" in r.result and kill is None
            continue
        assert isinstance(kill, dict)
        assert (kill["points"], kill["pid"]) == max(eligible)
        assert all(row.adj != -1000 and row.pid != 1 for row in r.table if row.pid == kill["pid"])
