"""The paging layer's harness: hardware strategies, generated page tables, and the MMU refinement machine."""
