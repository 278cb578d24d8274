"""The live-Linux oracle: the access helper (``access.c``), the driver, and the scenario generator."""
