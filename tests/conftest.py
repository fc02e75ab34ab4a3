"""Shared pytest configuration. Fixtures live in plugin modules listed here."""

pytest_plugins = ["tests.fixtures_valkey", "tests.fixtures_postgres"]
