"""Memory cgroups (cgroup v1): the hierarchy, charges, limits and the group OOM killer."""
