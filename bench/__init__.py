"""Benchmarks: each prints its figures as ratios against a limit measured in the same run."""
