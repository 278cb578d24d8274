"""The ground floor: the operation language, the error hierarchy and verdicts.

Every other package imports from here and this package imports none of them:
the spec, the implementation, the harness, the oracles and the command line
all speak the same scenario language (:mod:`lang.scenario` for the format,
:mod:`lang.ops` for the vocabulary), raise the same errors
(:mod:`lang.errors`) and report the same three-valued verdicts
(:mod:`lang.verdict`).

Importing the package registers every operation, so a scenario parsed
anywhere sees the whole vocabulary, whichever module was imported first.
"""

import lang.ops  # noqa: F401  (registers every operation with lang.scenario)
