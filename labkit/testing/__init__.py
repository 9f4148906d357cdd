"""Reusable checks for labkit's own tests and for teachers' tests (never imported by the library)."""
