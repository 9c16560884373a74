"""Benchmarks of enkrypt_async: ``python -m benchmarks`` or ``nox -s bench``."""
