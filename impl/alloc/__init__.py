"""Physical page allocation: a Linux-style buddy allocator with per-frame metadata and free lists."""
