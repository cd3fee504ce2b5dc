"""Shared test fixtures (see tests/conftest.py)."""
