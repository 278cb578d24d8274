"""The SLUB allocator: slabs in buddy blocks, freelists threaded through simulated memory."""
