"""Benchmarks for issue 8: ``make bench`` runs them all (``python -m benchmarks``); each figure is
a ratio against a baseline measured in the same run where there is one. See RESULTS.md."""
