"""Several CPUs: per-CPU TLB state, ASIDs, lazy TLB, and mapping changes in flight with their shootdowns.

:mod:`~spec.smp.state` holds the values, :mod:`~spec.smp.shootdown` the rules.
"""
