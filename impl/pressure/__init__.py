"""Memory pressure on the implementation kernel: the page cache, the LRU lists, reclaim and swap."""
