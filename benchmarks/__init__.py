"""Benchmarks: programs that print and store figures (`make bench-*`), never part of the test suite.

Run each as a module from the repository root, e.g. `python -m benchmarks.bench_perf`; they import
one another as `benchmarks.<name>` and the library as `detach_pl`.
"""
