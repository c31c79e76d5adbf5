"""Code the tests share that is not itself a test: tiny training data and recipes, metric fixtures and the golden
metric values. The test suite puts `tests/` on the import path (conftest.py), so these import as `support.*`."""
