"""Benchmarks against the floor, run by `make bench` (`python -m bench`).

Each figure is a ratio measured in one run, interleaved where two things are compared, so a
busy machine slows both sides alike. Results are printed as tables and written to
bench/results.json; BENCHMARKS.md records a run.
"""

from __future__ import annotations
