"""mmcheck report: the page's content, its exit codes, and the page in a real browser.

The browser tests drive Debian's Chromium in headless mode through the
DevTools protocol (a websocket): the page is loaded over file://, stepped
with real key events and a real click, and the text of the step on show is
checked against the records ``mmcheck explain`` computes.  They skip where
Chromium is absent, and fail instead when the environment variable ``CI``
is set.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lang.scenario import load
from mmcheck.cli import main
from mmcheck.views.browser import find_chromium, headless_flags
from mmcheck.views.explain import narrate
from mmcheck.views.report import build, to_html
from properties.mutants import recorded_mutant

SCENARIOS = Path(__file__).parent / "scenarios"
TLB = SCENARIOS / "tlb-stale-read-during-munmap.json"
SDM = SCENARIOS / "sdm-mmu-walk.json"
DIRTY_COW = Path(__file__).parent / "mutants" / "stories" / "dirty-cow.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sections(page: str) -> list[str]:
    """The step sections of a page, in order."""
    return re.findall(r'<section class="step.*?</section>', page, flags=re.S)


def report_page(path: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "report.html"
    code = main(["report", str(path), "-o", str(out), *extra])
    return code, out.read_text(encoding="utf-8")


# --- the page, without a browser ----------------------------------------------------------------


def test_every_op_has_a_step_with_its_rule_and_results(tmp_path: Path) -> None:
    scenario = load(TLB)
    code, page = report_page(TLB, tmp_path)
    assert 0 == code
    steps = sections(page)
    assert len(scenario.ops) == len(steps)
    for story, section in zip(narrate(scenario), steps, strict=True):
        assert f'id="op-{story.index}"' in section
        assert json.dumps(story.op.to_json()).replace('"', "&quot;") in section
        assert f'<p class="rule">{story.rule.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}' in (
            section.replace("&#x27;", "'")
        )
        result = json.dumps(story.result).replace('"', "&quot;")
        assert f'<td class="spec-result">{result}</td>' in section
        assert f'<td class="impl-result">{result}</td>' in section
        assert ("<svg" if shutil.which("dot") else "drawing-text") in section
        assert "buddyinfo" not in section or "Node 0, zone" in section


def test_the_page_loads_nothing_from_outside(tmp_path: Path) -> None:
    _, page = report_page(TLB, tmp_path)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for pattern in (r"\bsrc\s*=", r"\bhref\s*=", r"url\(", r"@import", r"<link\b"):
        assert re.search(pattern, page) is None, pattern
    assert re.search(r"https?://", page.split("<main>", 1)[1]) is None


def test_a_divergence_is_marked_and_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, page = report_page(DIRTY_COW, tmp_path)
    assert 1 == code
    assert "divergence at op 5" in capsys.readouterr().err
    steps = sections(page)
    assert ["ok"] * 5 + ["divergence"] == [re.search(r'data-status="(\w+)"', s).group(1) for s in steps]  # type: ignore[union-attr]
    assert "Divergence at op 5" in steps[5] and "Divergence" not in "".join(steps[:5])
    assert 'class="verdict bad"' in page


def test_steps_after_a_divergence_are_listed_as_not_run() -> None:
    scenario = load(SDM)
    expected = ({"pfn": 99},) + ({},) * (len(scenario.ops) - 1)
    stopped = dataclasses.replace(scenario, expected_results=expected)
    report = build(stopped, "sdm.json", shutil.which("dot"))
    assert 1 == report.exit_code
    assert report.stopped is not None and 0 == report.stopped.index
    assert ["unexpected"] + ["not-run"] * (len(scenario.ops) - 1) == [s.story.status for s in report.steps]
    assert "The scenario records {&quot;pfn&quot;: 99}" in to_html(report)


def test_without_graphviz_the_page_has_the_text_drawing_and_says_so() -> None:
    scenario = load(TLB)
    page = to_html(build(scenario, "tlb.json", dot=None))
    assert "<svg" not in page
    assert "Graphviz (dot) not found" in page
    assert 'class="drawing-text"' in page and "PML4" in page


def test_an_existing_output_is_kept_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    out.write_text("mine")
    assert 2 == main(["report", str(SDM), "-o", str(out)])
    err = capsys.readouterr().err
    assert "not overwritten without --force" in err and 1 == len(err.strip().splitlines())
    assert "mine" == out.read_text()
    assert 0 == main(["report", str(SDM), "-o", str(out), "--force"])
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_bad_input_exits_two_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"frames": 8}, "ops": [{"op": "access", "cpu": 5, "va": 0}]}))
    out = tmp_path / "out.html"
    assert 2 == main(["report", str(bad), "-o", str(out)])
    err = capsys.readouterr().err
    assert err.startswith("mmcheck: error: ops[0]") and 1 == len(err.strip().splitlines())
    assert not out.exists()
    bad.write_text("{not json")
    assert 2 == main(["report", str(bad), "-o", str(out)])
    assert 1 == len(capsys.readouterr().err.strip().splitlines())


# --- in Chromium --------------------------------------------------------------------------------


def chromium_or_skip() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and Chromium is not installed: the browser tests must run in CI")
        pytest.skip("Chromium not installed (apt-get install chromium); set CI to make this a failure")
    return found


class DevTools:
    """A minimal DevTools-protocol client over one websocket, attached to one page."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == number:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = json.loads(self.ws.recv())
            self.events.append(event)
            if event.get("method") == method:
                return event

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def key(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def click(self, selector: str) -> None:
        box = self.evaluate(
            f"(function () {{ var r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture
def browser() -> Iterator[DevTools]:
    chromium = chromium_or_skip()
    # Chromium's helpers (renderer, GPU, crash handler) can still write to the profile for a moment after the
    # browser is gone, so its removal may find a folder refilled: that is no failure of the test.
    with tempfile.TemporaryDirectory(prefix="mmcheck-test-chromium-", ignore_cleanup_errors=True) as profile:
        command = [chromium, *headless_flags(Path(profile)), "--remote-debugging-port=0", "--window-size=1280,1000"]
        process = subprocess.Popen([*command, "about:blank"], stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            assert process.stderr is not None
            url = None
            for line in process.stderr:
                if "DevTools listening on" in line:
                    url = line.split(" on ", 1)[1].strip()
                    break
            assert url is not None, "chromium did not open its DevTools port"
            tools = DevTools(url)
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            tools.session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            yield tools
            tools.ws.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the browser and the helpers it started
            process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def open_page(tools: DevTools, page: Path) -> None:
    tools.call("Page.enable")
    tools.call("Network.enable")
    tools.call("Page.navigate", url=page.resolve().as_uri())
    tools.wait_for("Page.loadEventFired")
    tools.call("Page.bringToFront")


def shown(tools: DevTools) -> dict[str, Any]:
    """The step on show: the position line, the visible sections' headings and rules, the address's fragment."""
    value = tools.evaluate(
        "JSON.stringify({position: document.getElementById('position').textContent,"
        " visible: Array.prototype.filter.call(document.querySelectorAll('section.step'),"
        "   function (s) { return !s.hidden; }).map(function (s) {"
        "     var rule = s.querySelector('.rule'); return {id: s.id, heading: s.querySelector('h2').textContent,"
        "     rule: rule ? rule.textContent : null, status: s.dataset.status}; }),"
        " hash: location.hash})"
    )
    parsed: dict[str, Any] = json.loads(value)
    return parsed


def test_keyboard_and_buttons_step_through_the_ops(browser: DevTools, tmp_path: Path) -> None:
    scenario = load(TLB)
    stories = list(narrate(scenario))
    last = len(stories) - 1
    page = tmp_path / "tlb.html"
    assert 0 == main(["report", str(TLB), "-o", str(page)])
    open_page(browser, page)

    def expect(index: int) -> None:
        state = shown(browser)
        story = stories[index]
        assert f"op {index} of {last}" == state["position"]
        heading = f"Op {index}: {story.op.name}"
        assert [{"id": f"op-{index}", "heading": heading, "rule": story.rule, "status": "ok"}] == state["visible"]
        assert f"#step-{index}" == state["hash"]

    expect(0)
    browser.key("ArrowLeft", 37)
    expect(0)
    for index in range(1, 4):
        browser.key("ArrowRight", 39)
        expect(index)
    browser.key("ArrowLeft", 37)
    expect(2)
    browser.key("End", 35)
    expect(last)
    browser.key("ArrowRight", 39)
    expect(last)
    browser.key("Home", 36)
    expect(0)
    browser.click("#next")
    expect(1)
    browser.click("#prev")
    expect(0)
    assert browser.evaluate("document.getElementById('prev').disabled") is True

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert shot.startswith(PNG_SIGNATURE) and len(shot) > 10_000
    (tmp_path / "tlb.png").write_bytes(shot)
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert [page.resolve().as_uri()] == [url.split("#", 1)[0] for url in requests]


def test_the_fragment_opens_a_step_and_the_divergence_shows(browser: DevTools, tmp_path: Path) -> None:
    page = tmp_path / "cow.html"
    assert 1 == main(["report", str(DIRTY_COW), "-o", str(page)])
    browser.call("Page.enable")
    browser.call("Page.navigate", url=page.resolve().as_uri() + "#step-5")
    browser.wait_for("Page.loadEventFired")
    state = shown(browser)
    assert "op 5 of 5" == state["position"]
    assert ["divergence"] == [s["status"] for s in state["visible"]]
    text = browser.evaluate("document.getElementById('op-5').innerText")
    mutant = recorded_mutant(load(DIRTY_COW))
    assert mutant is not None
    with mutant.applied():
        divergence = list(narrate(load(DIRTY_COW)))[-1].divergence
    assert divergence is not None
    assert f"Divergence at op 5: {divergence.reason}" in text
    assert browser.evaluate("getComputedStyle(document.getElementById('op-5')).borderTopColor") == "rgb(183, 28, 28)"


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_writes_a_png_of_the_first_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chromium_or_skip()
    page, shot = tmp_path / "r.html", tmp_path / "r.png"
    assert 0 == main(["report", str(SDM), "-o", str(page), "--screenshot", str(shot)])
    assert f"wrote {shot}" in capsys.readouterr().out
    assert (1280, 1100) == png_size(shot.read_bytes())
    assert 2 == main(["report", str(SDM), "-o", str(tmp_path / "other.html"), "--screenshot", str(shot)])


def test_a_missing_chromium_skips_only_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.find_chromium", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not installed"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        chromium_or_skip()
