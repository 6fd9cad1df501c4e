"""Benchmarks of Screener's AGI servers; run them with ``bench/run``."""
