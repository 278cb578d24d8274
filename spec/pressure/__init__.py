"""Memory pressure: files and the page cache, the LRU lists and reclaim, swap, and what /proc reports of them.

- :mod:`.files`: the in-model file system, its page cache, file mappings and writeback;
- :mod:`.lru`: the active and inactive lists, the referenced-bit second chance, reclaim's allowed choices;
- :mod:`.swap`: swap slots and their counts, the swap cache, swap-in and swapoff;
- :mod:`.meminfo`: ``/proc/meminfo``, ``/proc/PID/status`` and ``/proc/vmstat``;
- :mod:`.invariants`: the area's invariants, joined to :mod:`spec.mm.invariants`.
"""
