"""The live kernel's slab caches against the slab geometry, and the sysfs reader on a fake tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcheck.cli import main
from oracles.slab import sysfs

UNAVAILABLE = sysfs.unavailable()
needs_sysfs = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"/sys/kernel/slab unavailable: {UNAVAILABLE}")

DEFAULTS = {"red_zone": 0, "poison": 0, "store_user": 0, "destroy_by_rcu": 0, "min_partial": 5}


def make_cache(root: Path, name: str, ctor: str = "", **numbers: int) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    for key, value in {**DEFAULTS, **numbers}.items():
        (directory / key).write_text(f"{value}\n")
    (directory / "ctor").write_text(f"{ctor}\n" if ctor else "")
    return directory


def fake_tree(root: Path) -> Path:
    """kmalloc-64 and dentry as a 2-CPU x86-64 kernel shows them, an alias, a cache with a constructor,
    a red-zoned one and an RCU one."""
    make_cache(root, "kmalloc-64", object_size=64, slab_size=64, align=64, objs_per_slab=64, order=0)
    make_cache(root, "dentry", object_size=192, slab_size=192, align=8, objs_per_slab=21, order=0)
    (root / ":0000192").symlink_to("dentry")
    (root / "other-192").symlink_to("dentry")
    make_cache(
        root,
        "inode_cache",
        ctor="init_once+0x0/0x10",
        object_size=600,
        slab_size=608,
        align=8,
        objs_per_slab=13,
        order=1,
    )
    make_cache(root, "debugged", object_size=64, slab_size=136, align=8, objs_per_slab=30, order=0, red_zone=1)
    make_cache(root, "rcu", object_size=64, slab_size=72, align=8, objs_per_slab=56, order=0, destroy_by_rcu=1)
    return root


def test_reader_counts_each_real_cache_once_with_its_aliases(tmp_path: Path) -> None:
    caches = {c.name: c for c in sysfs.read_caches(fake_tree(tmp_path))}
    assert sorted(caches) == ["debugged", "dentry", "inode_cache", "kmalloc-64", "rcu"]
    assert caches["dentry"].aliases == (":0000192", "other-192")
    assert caches["inode_cache"].ctor and not caches["dentry"].ctor
    assert caches["kmalloc-64"].numbers["objs_per_slab"] == 64
    assert caches["debugged"].flags["red_zone"] and not caches["dentry"].flags["red_zone"]


def test_compare_on_fake_tree(tmp_path: Path) -> None:
    report = sysfs.compare(sysfs.read_caches(fake_tree(tmp_path)), sysfs.Params(cpus=2))
    assert report.agree
    assert report.summary() == "agree 3 of 3 expressible, 2 not expressible"
    reasons = {o.cache.name: o.reason for o in report.outcomes if o.reason}
    assert "SLAB_RED_ZONE" in (reasons["debugged"] or "")
    assert "SLAB_TYPESAFE_BY_RCU" in (reasons["rcu"] or "")


def test_a_wrong_kernel_number_is_a_disagreement_on_both_sides(tmp_path: Path) -> None:
    make_cache(tmp_path, "kmalloc-64", object_size=64, slab_size=64, align=64, objs_per_slab=32, order=1)
    report = sysfs.compare(sysfs.read_caches(tmp_path), sysfs.Params(cpus=2))
    assert not report.agree
    (outcome,) = report.outcomes
    assert outcome.spec == {"objs_per_slab": (32, 64), "order": (1, 0)}
    assert outcome.impl == outcome.spec
    assert "disagree spec kmalloc-64: objs_per_slab kernel 32 model 64, order kernel 1 model 0" in report.render()
    assert report.summary() == "agree 0 of 1 expressible, 0 not expressible"


def test_cpu_count_changes_the_order(tmp_path: Path) -> None:
    # 8 CPUs: min_objects 4 * (fls(8) + 1) = 20, so 256-byte objects need an order-1 slab (32 objects);
    # 2 CPUs: 12, which an order-0 slab (16 objects) holds.
    make_cache(tmp_path, "c256", object_size=256, slab_size=256, align=8, objs_per_slab=32, order=1)
    caches = sysfs.read_caches(tmp_path)
    assert sysfs.compare(caches, sysfs.Params(cpus=8)).agree
    assert not sysfs.compare(caches, sysfs.Params(cpus=2)).agree


def test_present_cpus_and_cmdline(tmp_path: Path) -> None:
    (tmp_path / "present").write_text("0-3,6\n")
    (tmp_path / "possible").write_text("0-7\n")
    assert sysfs.present_cpus(tmp_path) == 5
    (tmp_path / "present").write_text("0\n")
    assert sysfs.present_cpus(tmp_path) == 8
    params = sysfs.cmdline_params("quiet slub_min_objects=4 slab_max_order=2 -- slub_max_order=9", 2)
    assert params == sysfs.Params(2, 4, 2)
    assert sysfs.cmdline_params("quiet", 3) == sysfs.Params(3, 0, 3)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    directory = make_cache(tmp_path, "broken", object_size=64, slab_size=64, align=64, objs_per_slab=64, order=0)
    (directory / "order").unlink()
    with pytest.raises(sysfs.SysfsError, match="order"):
        sysfs.read_caches(tmp_path)
    assert sysfs.unavailable(tmp_path / "absent") is not None


@needs_sysfs
def test_live_kernel_caches_agree_with_the_model() -> None:
    report = sysfs.live_report()
    assert report.expressible, report.render()
    disagreements = [line for line in report.render() if line.startswith("disagree")]
    assert report.agree, disagreements


@needs_sysfs
def test_cli_oracle_slab(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracle", "slab"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("agree ") and "expressible" in out[-1]


def test_cli_oracle_slab_takes_no_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracle", "slab", "x.json"]) == 2
    assert "takes no scenario file" in capsys.readouterr().err
