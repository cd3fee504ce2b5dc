"""Fixtures shared by every test folder live in tests/support/; this file only lists them."""

pytest_plugins = [
    "tests.support.agi",
    "tests.support.ami",
    "tests.support.db",
    "tests.support.gateway",
]
