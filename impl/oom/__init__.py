"""The OOM killer on the implementation kernel: per-process ``oom_score_adj``, badness, the victim, the kill."""
