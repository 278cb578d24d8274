"""The user-space allocator's refinement: the ptmalloc model abstracted to the contract, its machine."""
