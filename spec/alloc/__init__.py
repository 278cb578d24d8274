"""Physical page allocation: the buddy allocator as a value (Linux mm/page_alloc.c)."""
