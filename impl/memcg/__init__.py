"""Memory cgroups of the implementation kernel."""
