"""Benchmarks of Dialer: `make bench` (the suite) and `make bench-scale` (one million calls).

Every figure is measured beside a baseline taken in the same run on the same servers, and
reported with the ratio between them; see BENCHMARKS.md. Benchmarks are not tests: the
test suite never runs them.
"""
