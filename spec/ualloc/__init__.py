"""The user-space allocator's contract (:mod:`spec.ualloc.contract`): what malloc and friends promise a program."""
