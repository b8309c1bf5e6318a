"""Benchmarks for oauth-loopback: bind and dispatch latency against floors measured in the same run.

Run ``python benchmarks/run.py`` (``--quick`` for a short run); see docs/benchmarks.md.
"""
