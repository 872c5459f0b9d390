"""Benchmarks that print figures; ratios are against baselines measured in the same run."""
