"""Benchmarks for flask_dispatch: ``python -m benchmarks`` (see docs/performance.rst)."""
