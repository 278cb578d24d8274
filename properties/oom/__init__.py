"""The refinement machine of the OOM killer."""
