"""Replaying a scenario on the spec, the implementation, or both in lockstep."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lang.errors import MMCheckError
from lang.scenario import Result, Scenario
from properties.drivers import Divergence, DivergenceError, ImplRunner, Lockstep, SpecRunner

MODELS = ("both", "spec", "impl")


class ReplayInputError(MMCheckError):
    """An operation of the scenario was rejected as bad input (CLI exit code 2)."""

    def __init__(self, index: int, op_name: str, error: MMCheckError) -> None:
        self.index = index
        self.error = error
        super().__init__(f"ops[{index}] ({op_name}): {error}")


@dataclass
class Report:
    """What a replay produced: one result per op run, and the first problem if any."""

    results: list[Result] = field(default_factory=list)
    divergence: Divergence | None = None
    expected_mismatch: int | None = None

    @property
    def ok(self) -> bool:
        """No divergence and every expected result matched."""
        return self.divergence is None and self.expected_mismatch is None


def result_matches(expected: Result, actual: Result) -> bool:
    """Every key an expected result lists has that value (files may leave out model-specific keys, like a pfn)."""
    return all(key in actual and actual[key] == value for key, value in expected.items())


def replay(scenario: Scenario, model: str = "both", progress: Callable[[int], None] | None = None) -> Report:
    """Run every op; stop at the first divergence.  Bad input raises :class:`ReplayInputError`.

    ``progress``, if given, is called with the number of ops done after each one.
    """
    if model not in MODELS:
        raise MMCheckError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    runner: SpecRunner | ImplRunner | Lockstep
    if model == "spec":
        runner = SpecRunner(scenario.config)
    elif model == "impl":
        runner = ImplRunner(scenario.config)
    else:
        runner = Lockstep(scenario.config)
    report = Report()
    for index, op in enumerate(scenario.ops):
        try:
            report.results.append(runner.apply(op))
            if progress is not None:
                progress(index + 1)
        except DivergenceError as exc:
            report.divergence = exc.divergence
            return report
        except MMCheckError as exc:
            raise ReplayInputError(index, op.name, exc) from exc
    if scenario.expected_results is not None:
        for index, (want, got) in enumerate(zip(scenario.expected_results, report.results, strict=True)):
            if not result_matches(want, got):
                report.expected_mismatch = index
                break
    return report
