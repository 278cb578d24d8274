"""Real glibc as an oracle for the user-space allocator: ``driver.c`` runs one sequence of calls in a fresh process."""
