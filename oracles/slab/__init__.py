"""The live kernel's slab caches (/sys/kernel/slab) as an oracle for the slab geometry."""
