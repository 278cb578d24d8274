"""The shared lost-update model (:func:`proofs.promela.lost_update`) checked by musil: run by musil's own
interpreter (Python 3.12 or later, ``nox -s musil`` or ``MMCHECK_MUSIL_PYTHON``), one JSON line out.

musil (PyPI) is a pure-Python explicit-state checker of guarded actions: each action of the shared model is
handed to it as its ``enabled`` and ``apply`` (:func:`proofs.promela.actions`), the same generated Python the
spec explorer runs, with no invariant (every reachable state counted) and every dead end allowed (a finished
run).  Usage: ``python benchmarks/musil_rate.py PROCESSES`` from the project root.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import musil

from proofs import promela


def main(argv: list[str]) -> int:
    processes = int(argv[0]) if argv else 6
    model = promela.lost_update(processes)
    checked = musil.Model(
        init=[promela.ModelSystem(model).initial()],  # a list: a tuple state alone would read as several
        actions=[musil.Action(name, enabled, apply) for name, enabled, apply in promela.actions(model)],
        terminal=lambda state: True,
    )
    start = time.perf_counter()
    result = musil.check(checked, max_states=10**8)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "model": model.name,
                "states": result.states_explored,
                "ok": result.ok,
                "truncated": result.truncated,
                "seconds": seconds,
                "musil": musil.__version__,
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
