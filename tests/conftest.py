"""pytest setup: load the project's Hypothesis profile explicitly (see properties/profiles.py)."""

from properties import profiles

profiles.load()
