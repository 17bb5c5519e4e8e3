"""Test support code shared by the test suites (servers, fixtures)."""
