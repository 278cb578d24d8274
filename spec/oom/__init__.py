"""Out of memory: the OOM killer's badness, its victim choice, the kill, and ``/proc/PID/oom_score``.

- :mod:`.badness`: ``oom_badness()``, ``/proc/PID/oom_score``, ``oom_score_adj`` and the OOM sysctls,
  ``out_of_memory()`` for the global domain (mm/oom_kill.c, fs/proc/base.c, Linux 6.x);
- :mod:`.invariants`: the area's invariants (the state's, and those of a kill against the state before it).
"""
