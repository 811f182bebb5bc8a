"""Helpers for running the benchmarks and experiments on a GPU machine without internet access."""
