"""mmcheck explain: a scenario narrated op by op, and a divergence named where it happens."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.paging.mmu import Mmu
from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.explain import explain

SDM = Path(__file__).parent / "scenarios" / "sdm-mmu-walk.json"


def test_every_op_is_narrated_and_the_run_agrees() -> None:
    scenario = load(SDM)
    lines, ok = explain(scenario)
    assert ok
    assert len(scenario.ops) == sum(line.startswith("[") for line in lines)
    assert "changed: [0x4010] 0x8000000000101007 -> 0x8000000000101067 (set A D)" in "\n".join(lines)


def test_a_divergence_is_named_at_its_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an implementation that ignores CR0.WP, the story stops at the supervisor write to a read-only page."""
    original = Mmu._allowed

    def ignore_wp(cpu: object, rights: int, no_exec: int, kind: int, user: bool) -> bool:
        return True if kind == 1 and not user and rights & 4 == 0 else original(cpu, rights, no_exec, kind, user)  # type: ignore[arg-type]

    monkeypatch.setattr(Mmu, "_allowed", staticmethod(ignore_wp))
    lines, ok = explain(load(Path(__file__).parent / "scenarios" / "sdm-permission-rules.json"))
    assert not ok
    assert "DIVERGENCE: results differ" in "\n".join(lines)
    assert lines[-1].startswith("the implementation does not refine the spec at op")


def test_cli_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(SDM)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("spec and implementation agree at every step")


SCENARIOS = Path(__file__).parent / "scenarios"


def test_kernel_ops_name_the_rule_and_the_diff() -> None:
    """The fork and the child's write read as COW: entries write-protected, then the shared frame copied."""
    lines, ok = explain(load(SCENARIOS / "linux-kernel-cow-fork.json"))
    text = "\n".join(lines)
    assert ok
    assert "[4] fork of pid 1: child pid 2 gets the parent's VMAs; 1 private anonymous entry is shared" in text
    assert "    changed: pid 1 va 0x100000000000: frame 0xa rw- -> frame 0xa r--" in text
    assert "COW-shared frame 0xa is copied to frame 0xf (wp_page_copy)" in text
    assert "a read maps the shared zero page read-only (do_anonymous_page)" in text


def test_a_buddy_mutant_names_the_broken_invariant(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the buddy computed as pfn + (1 << order), freeing pfn 1 merges with pfn 2: coalescing and cover break."""
    import impl.alloc.buddy

    monkeypatch.setattr(impl.alloc.buddy, "find_buddy_pfn", lambda pfn, order: pfn + (1 << order))
    scenario = load(SCENARIOS / "buddy-expand-merge.json")
    lines, ok = explain(scenario)
    text = "\n".join(lines)
    assert not ok
    assert "invariant broken in the implementation's state:" in text
    assert "_violations: " in text.split("invariant broken in the implementation's state:")[1]


def test_partial_expected_results_match_like_replay() -> None:
    """A recorded result may leave out model-specific keys (a pagemap pfn), as replay allows."""
    lines, ok = explain(load(SCENARIOS / "linux-kernel-cow-fork.json"))
    assert ok
    assert not any("UNEXPECTED" in line for line in lines)


def test_a_shootdown_in_steps_tells_the_stale_hits_the_ipis_and_the_late_free() -> None:
    """Loads in flight hit the stale entry; each step names its CPU; the frames are freed only at the last step."""
    lines, ok = explain(load(SCENARIOS / "tlb-stale-read-during-munmap.json"))
    text = "\n".join(lines)
    assert ok
    assert "[7] cpu 2 runs a kernel thread: the mm it had stays loaded" in text
    held = "refcount 1, mapcount 0, exclusive; the mmu_gather holds 1 of them until every IPI is handled"
    assert f"    changed: frame 0x2: refcount 1, mapcount 1, exclusive -> {held}" in text
    assert "    changed: frame 0x2: last reference dropped, back to the buddy allocator" in text
    assert "    changed: IPI sent to cpu 0, 1, 2" in text
    for index in (9, 11):
        at = lines.index(next(line for line in lines if line.startswith(f"[{index}] ")))
        assert "cpu 1's TLB still holds the old translation" in lines[at]
        assert "    result: {'value': 7}" == lines[at + 1]
    assert "[13] step of operation 1: cpu 2 handles its IPI (flush_tlb_func): it was lazy, so it switches" in text
    assert [line for line in lines if "frames freed" in line] == ["    changed: frames freed: 0x0, 0x1, 0x2, 0x27"]
    assert text.index("frames freed") > text.index("[14] step of operation 1: every target has handled its IPI")


def test_a_pages_life_reads_off_the_spec_states() -> None:
    """The page's-life scenario: second chance, swap-out with the swap entry, swap-in major then swap-cache minor,
    a page-cache miss, writeback of the dirty file page on eviction, all in agreement with the implementation."""
    lines, ok = explain(load(SCENARIOS / "pressure-page-life.json"))
    text = "\n".join(lines)
    assert ok
    assert "second chance: anon frame 0x12 (pid 1 0x10000000) is on the inactive list but referenced" in text
    assert "pid 1 0x10000000: PTE becomes swap entry type 0 offset 1 (PTE 0x7fffffffffffc00, __swp_entry)" in text
    assert "every TLB flushed before frame 0x12 goes back to the buddy allocator" in text
    assert "[11] pid 1 load at 0x10000000: major fault, swap-in" in text
    assert "[15] pid 2 load at 0x10000000: minor fault, swap-in" in text
    assert "slot 1 is still in the swap cache as frame 0x16" in text
    assert "[19] pid 2 load at 0x40000008: major fault on a missing entry of a file mapping: page-cache miss" in text
    assert "evict file f page 1 (frame 0xb): inactive and not referenced, dirty, so written back" in text
    assert "[26] read() of file f at 0x8 (page 0) through the page cache (filemap_read): page-cache hit" in text
    assert "[29] pid 2 load at 0x10001000: the entry allows it, no fault; the walker sets its accessed bit" in text


def test_the_swap_entry_shown_is_the_one_the_implementation_writes() -> None:
    from impl.pressure.pressure import swp_entry, swp_offset
    from mmcheck.views.pressurestory import swp_entry as shown_entry

    for slot in (1, 2, 3, 0x1234, (1 << 40) + 5):
        assert shown_entry(0, slot) == swp_entry(0, slot)
        assert swp_offset(shown_entry(0, slot)) == slot


def test_every_reclaim_step_is_replayed_to_the_ops_state() -> None:
    """The narration replays reclaim on the spec; a replay that did not end in the op's state would say so."""
    lines, ok = explain(load(SCENARIOS / "pressure-page-life.json"))
    assert ok
    assert not any("do not end in the op's state" in line for line in lines)
    assert any(line.startswith("[6] reclaim up to 1 page(s) (shrink_lruvec") and "5 step(s)" in line for line in lines)


def test_dirty_tracking_of_a_shared_file_mapping() -> None:
    """Read fault read-only, the store dirties it, fsync writes it back and write-protects it, the next store faults."""
    lines, ok = explain(load(SCENARIOS / "pressure-writeback-dirty-tracking.json"))
    text = "\n".join(lines)
    assert ok
    assert "[4] pid 1 load at 0x40000008: major fault on a missing entry of a file mapping: page-cache miss" in text
    assert "[5] pid 1 store at 0x40000008: minor fault, a write to the write-protected entry" in text
    assert "entries write-protected so the next store faults and dirties it again (folio_mkclean)" in text
    assert text.count("wp_page_shared makes the entry writable and the page dirty") == 2


def test_a_refault_tells_the_list_workingset_detection_chose() -> None:
    """With workingset detection on, a page read back in says whether its refault distance made it active."""
    lines, ok = explain(load(SCENARIOS / "pressure-workingset-refault.json"))
    text = "\n".join(lines)
    assert ok
    assert "[8] read() of file f at 0x1008 (page 1) through the page cache (filemap_read): page-cache miss" in text
    assert "added to the active file list (filemap_add_folio); a refault: its shadow entry" in text
    assert "[17] read() of file f at 0x2008 (page 2)" in text
    assert text.count("a refault, but its refault distance is larger than the workingset") == 2
    page_7 = next(line for line in lines if line.startswith("[21] read() of file f at 0x7008 (page 7)"))
    assert "page-cache miss" in page_7 and "refault" not in page_7  # its shadow went with the truncation
    assert text.count("; a refault") == 3


def test_thp_faults_and_splits_are_told() -> None:
    """A THP write fault, the huge zero page on a read, the split of both at an mprotect that changes the VMA, and
    a write to the huge zero page that splits its PMD."""
    from lang.kernel_ops import Mprotect, Store
    from lang.scenario import Scenario

    scenario = load(SCENARIOS / "linux-thp-mprotect-same-prot.json")
    base = 0x100000000000
    ops = (*scenario.ops[:7], Store(0, base + 0x300000, 4), Mprotect(1, base + 0x1FF000, 2, "r--"))
    lines, ok = explain(Scenario(scenario.config, ops))
    assert ok
    rule = {int(line[1 : line.index("]")]): line for line in lines if line.startswith("[")}
    assert "do_huge_pmd_anonymous_page" in rule[5] and "set_huge_zero_folio" in rule[6]
    assert "write to the huge zero page; its PMD is split" in rule[7]
    assert "1 THP PMD split where the range or a VMA edge cuts it" in rule[8]
