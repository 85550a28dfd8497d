"""Sweeps: a study's grid of runs, run resumably, and its paper-style table."""
