"""CrossHair contract checks of the pure spec functions (filled in by the contracts work)."""
