"""One self-contained HTML page per scenario, stepped through op by op.

``mmcheck report FILE -o report.html`` runs the scenario on the spec and the
implementation in lockstep, as ``mmcheck explain`` does, and writes a page
with one step per op: the op as JSON and in words, the result on each side,
the rule that fired and what changed (the records of
:func:`mmcheck.views.explain.narrate`), the page tables and TLBs drawn by
Graphviz (:mod:`mmcheck.views.draw`, the SVG inlined), and the buddy free
lists of both sides (:mod:`mmcheck.views.buddyview`).  A divergence is marked
on its step.  Everything the page needs (CSS, script, drawings) is inside the
file, and its Content-Security-Policy forbids loading anything else, so it
opens offline.  Prev/Next, the arrow keys, Home and End step through it;
``#step-K`` in the address opens step K (the sections are ``op-K``, so the fragment never scrolls).
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from lang.errors import MMCheckError
from lang.scenario import Result, Scenario
from mmcheck.views.buddyview import buddyinfo_line, free_list_lines
from mmcheck.views.draw import picture, svg_text, to_dot, to_text, with_cpus
from mmcheck.views.explain import StepStory, footer, narrate
from properties.drivers import Lockstep
from properties.replay import ReplayInputError
from properties.smp.abstraction import abstract_tlb
from spec.paging.pte import flag_names

STATUS_WORDS = {
    "ok": "spec and implementation agree",
    "divergence": "DIVERGENCE: the implementation does not refine the spec here",
    "unexpected": "UNEXPECTED: the result is not the one the scenario records",
    "not-run": "not run: the run stopped at an earlier op",
}


@dataclass
class PageStep:
    """What the page shows for one op."""

    story: StepStory
    spec_result: str
    impl_result: str
    drawing: str
    drawing_is_svg: bool
    spec_free: list[list[int]]
    impl_free: list[list[int]]
    memory: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The steps of a scenario's page and how the run ended: ``stopped`` is the step of a divergence or an
    unexpected result, after which the ops are listed as not run."""

    name: str
    about: str
    steps: list[PageStep]
    total_ops: int
    graphviz: bool
    verdict: str
    stopped: StepStory | None = None

    @property
    def exit_code(self) -> int:
        """1 when the run stopped at a divergence or an unexpected result, like ``mmcheck replay``; else 0."""
        return 0 if self.stopped is None else 1


def result_text(result: Result | None) -> str:
    """A result as JSON, or a dash when the op gave none."""
    return "—" if result is None else json.dumps(result)


def side_results(story: StepStory) -> tuple[str, str]:
    """The spec's and the implementation's result of a step.

    At a step that ran the lockstep compared them and found them equal (after
    the spec took the implementation's allowed choice of block or A/D bits),
    so both are the one result; at a divergence each side's own value is shown.
    """
    if story.divergence is not None:
        d = story.divergence
        return repr(d.spec), repr(d.impl)
    return result_text(story.result), result_text(story.result)


def memory_lines(lockstep: Lockstep) -> list[str]:
    """The non-zero words of physical memory and each CPU's controls (scenarios without processes)."""
    state = lockstep.spec.state
    words = sorted(state.memory.words.items())
    lines = [f"[{pa:#x}] = {value:#x} [{flag_names(value)}]" for pa, value in words if value]
    for cpu, ctl in enumerate(state.cpus):
        lines.append(f"cpu {cpu}: {ctl}")
    return lines


def drawing(lockstep: Lockstep, title: str, dot: str | None) -> tuple[str, bool]:
    """The page tables and TLBs of the spec's state (the implementation's TLB entries beside them): SVG text
    when Graphviz ``dot`` is given, else the plain-text drawing."""
    kernel = lockstep.spec.kernel.kernel
    smp = lockstep.impl.kernel.smp
    held = [abstract_tlb(tlb) for tlb in smp.tlbs] if smp is not None else None
    pic = with_cpus(picture(kernel, lockstep.spec.buddy, title), kernel, held)
    if dot is None:
        return to_text(pic), False
    svg = svg_text(to_dot(pic), dot)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    return svg, True


def build(scenario: Scenario, name: str, dot: str | None = None) -> Report:
    """Run ``scenario`` in lockstep and gather its page; ``dot`` is Graphviz's program (text drawings without).

    An op rejected as bad input raises :class:`~properties.replay.ReplayInputError`, as ``mmcheck replay`` does.
    """
    lockstep = Lockstep(scenario.config)
    steps: list[PageStep] = []
    for story in narrate(scenario, lockstep):
        if story.status == "rejected":
            assert story.error is not None
            raise ReplayInputError(story.index, story.op.name, story.error)
        spec_result, impl_result = side_results(story)
        title = f"{name} after op {story.index} ({story.op.name})"
        text, is_svg = drawing(lockstep, title, dot)
        buddy = lockstep.impl.buddy
        steps.append(
            PageStep(
                story,
                spec_result,
                impl_result,
                text,
                is_svg,
                [sorted(b.pfn for b in lockstep.spec.buddy.free if b.order == o) for o in range(buddy.max_order + 1)],
                [buddy.free_list(order) for order in range(buddy.max_order + 1)],
                memory_lines(lockstep) if lockstep.spec.kernel.kernel is None else [],
            )
        )
    report = Report(name, scenario.about or "", steps, len(scenario.ops), dot is not None, footer(scenario))
    stopped = steps[-1].story if steps and steps[-1].story.status != "ok" else None
    if stopped is not None:
        report.stopped = stopped
        unexpected = f"unexpected result at op {stopped.index}"
        report.verdict = stopped.lines[-1] if stopped.status == "divergence" else unexpected
        for index in range(stopped.index + 1, len(scenario.ops)):
            not_run = StepStory(index, scenario.ops[index], status="not-run")
            steps.append(PageStep(not_run, "—", "—", "", False, [], []))
    return report


# --- report -> HTML -----------------------------------------------------------------------------

CSS = """
:root { --ok: #1b5e20; --bad: #b71c1c; --line: #d0d0d0; }
body { font-family: system-ui, sans-serif; margin: 0; color: #111; background: #fafafa; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: .5rem 1rem; }
h1 { font-size: 1.2rem; margin: .2rem 0; }
.about { max-width: 70rem; font-size: .9rem; color: #333; }
.verdict { font-weight: bold; }
.verdict.ok { color: var(--ok); }
.verdict.bad { color: var(--bad); }
nav { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
nav button { font-size: 1rem; padding: .2rem .8rem; }
#position { font-variant-numeric: tabular-nums; min-width: 8rem; text-align: center; }
.strip { display: flex; gap: 2px; flex-wrap: wrap; margin: .3rem 0 0; padding: 0; list-style: none; }
.strip li { width: 1.6rem; text-align: center; font-size: .7rem; border: 1px solid var(--line); cursor: pointer; }
.strip li.current { outline: 2px solid #0d47a1; }
.strip li.divergence, .strip li.unexpected { background: var(--bad); color: #fff; }
.strip li.not-run { color: #999; }
main { padding: 1rem; }
section.step { background: #fff; border: 1px solid var(--line); padding: .5rem 1rem 1rem; }
section.step.divergence, section.step.unexpected { border: 3px solid var(--bad); }
h2 { font-size: 1.1rem; }
h3 { font-size: .95rem; margin: .8rem 0 .3rem; }
pre { background: #f4f4f4; padding: .4rem; overflow-x: auto; font-size: .85rem; margin: 0; }
.status { font-weight: bold; color: var(--ok); }
.divergence .status, .unexpected .status { color: var(--bad); }
.not-run .status { color: #777; }
table.results td, table.results th { border: 1px solid var(--line); padding: .2rem .5rem; text-align: left;
  font-family: monospace; }
.alert { background: #ffebee; border-left: 6px solid var(--bad); padding: .4rem .8rem; }
.drawing svg { max-width: 100%; height: auto; }
.note { color: #8a4b00; font-style: italic; }
.columns { display: flex; gap: 2rem; flex-wrap: wrap; }
"""

SCRIPT = """
(function () {
  var steps = Array.prototype.slice.call(document.querySelectorAll("section.step"));
  var marks = Array.prototype.slice.call(document.querySelectorAll(".strip li"));
  var position = document.getElementById("position");
  var current = 0;
  function show(index) {
    current = Math.max(0, Math.min(steps.length - 1, index));
    steps.forEach(function (step, i) { step.hidden = i !== current; });
    marks.forEach(function (mark, i) { mark.classList.toggle("current", i === current); });
    position.textContent = "op " + current + " of " + (steps.length - 1);
    document.getElementById("prev").disabled = current === 0;
    document.getElementById("first").disabled = current === 0;
    document.getElementById("next").disabled = current === steps.length - 1;
    document.getElementById("last").disabled = current === steps.length - 1;
    try { history.replaceState(null, "", "#step-" + current); } catch (e) { /* an address that refuses it */ }
  }
  document.getElementById("first").onclick = function () { show(0); };
  document.getElementById("prev").onclick = function () { show(current - 1); };
  document.getElementById("next").onclick = function () { show(current + 1); };
  document.getElementById("last").onclick = function () { show(steps.length - 1); };
  marks.forEach(function (mark, i) { mark.onclick = function () { show(i); }; });
  document.addEventListener("keydown", function (event) {
    var moves = { ArrowLeft: current - 1, ArrowRight: current + 1, Home: 0, End: steps.length - 1 };
    if (event.altKey || event.ctrlKey || event.metaKey || !(event.key in moves)) { return; }
    event.preventDefault();
    show(moves[event.key]);
  });
  var wanted = /^#step-(\\d+)$/.exec(location.hash);
  show(wanted ? parseInt(wanted[1], 10) : 0);
})();
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def esc(text: str) -> str:
    """Text for HTML."""
    return html.escape(text, quote=True)


def pre(lines: Sequence[str], cls: str = "") -> str:
    """Lines in a ``<pre>``."""
    attr = f' class="{cls}"' if cls else ""
    return f"<pre{attr}>" + esc("\n".join(lines)) + "</pre>"


def free_lists_html(title: str, free: list[list[int]]) -> str:
    """One side's free lists: the /proc/buddyinfo line and the blocks of each order."""
    lines = [buddyinfo_line([len(pfns) for pfns in free]), *free_list_lines(free)]
    return f"<div><h3>{esc(title)}</h3>{pre(lines)}</div>"


def step_html(step: PageStep, report: Report) -> str:
    """One ``<section>``: the op, its results, rule, changes, drawing and free lists."""
    story = step.story
    op_json = json.dumps(story.op.to_json())
    parts = [
        f'<section class="step {story.status}" id="op-{story.index}" data-status="{story.status}">',
        f"<h2>Op {story.index}: {esc(story.op.name)}</h2>",
        f'<p class="status">{esc(STATUS_WORDS[story.status])}</p>',
        "<h3>Operation (JSON)</h3>",
        f'<pre class="op-json">{esc(op_json)}</pre>',
    ]
    if story.status == "not-run":
        parts.append("</section>")
        return "\n".join(parts)
    parts += [
        "<h3>In words: the rule that fired</h3>",
        f'<p class="rule">{esc(story.rule or story.op.name)}</p>',
        "<h3>Result</h3>",
        '<table class="results">',
        f'<tr><th>spec</th><td class="spec-result">{esc(step.spec_result)}</td></tr>',
        f'<tr><th>impl</th><td class="impl-result">{esc(step.impl_result)}</td></tr>',
        "</table>",
    ]
    if story.divergence is not None:
        d = story.divergence
        detail = [line.strip() for line in story.lines if line.startswith("    ")]
        parts += [
            '<div class="alert divergence-detail">',
            f"<p><strong>Divergence at op {d.index}: {esc(d.reason)}</strong></p>",
            pre(detail),
            "</div>",
        ]
    if story.status == "unexpected":
        parts.append(f'<div class="alert">The scenario records {esc(result_text(story.expected))}</div>')
    if story.changes:
        parts += ["<h3>What changed</h3>", pre(story.changes, "changes")]
    parts += ["<h3>The whole story of this op (mmcheck explain)</h3>", pre(story.lines, "story")]
    parts.append("<h3>Page tables and TLBs</h3>")
    if step.drawing_is_svg:
        parts.append(f'<div class="drawing">{step.drawing}</div>')
    else:
        parts.append(
            '<p class="note">Graphviz (dot) was not found when this page was made: the text drawing instead.</p>'
        )
        parts.append(pre(step.drawing.splitlines(), "drawing-text"))
    if step.memory:
        parts += ["<h3>Physical memory (non-zero words) and CPU controls</h3>", pre(step.memory, "memory")]
    parts.append("<h3>Buddy free lists</h3>")
    parts.append('<div class="columns">')
    parts.append(free_lists_html("spec (lowest pfn first)", step.spec_free))
    parts.append(free_lists_html("impl (in the order allocation takes them)", step.impl_free))
    parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def to_html(report: Report) -> str:
    """The page."""
    ok = report.stopped is None
    strip = "".join(
        f'<li class="{s.story.status}" title="op {s.story.index}: {esc(s.story.op.name)}">{s.story.index}</li>'
        for s in report.steps
    )
    graphviz = "" if report.graphviz else '<p class="note">Graphviz (dot) not found: drawings are text.</p>'
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            f"<title>mmcheck report: {esc(report.name)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            "<header>",
            f"<h1>mmcheck report: {esc(report.name)}</h1>",
            f'<p id="verdict" class="verdict {"ok" if ok else "bad"}">{esc(report.verdict)}</p>',
            graphviz,
            "<nav>",
            '<button id="first" title="Home">&#xAB; first</button>',
            '<button id="prev" title="left arrow">&#x2190; Prev</button>',
            f'<span id="position">op 0 of {len(report.steps) - 1}</span>',
            '<button id="next" title="right arrow">Next &#x2192;</button>',
            '<button id="last" title="End">last &#xBB;</button>',
            "</nav>",
            f'<ol class="strip">{strip}</ol>',
            f'<details class="about"><summary>About this scenario</summary>{esc(report.about)}</details>'
            if report.about
            else "",
            "</header>",
            "<main>",
            *(step_html(step, report) for step in report.steps),
            "</main>",
            f"<script>{SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def graphviz() -> str | None:
    """The path of Graphviz's ``dot``, if installed."""
    return shutil.which("dot")


def check_scenario(scenario: Scenario) -> None:
    """A page needs at least one op."""
    if not scenario.ops:
        raise MMCheckError("the scenario has no ops: nothing to step through")
