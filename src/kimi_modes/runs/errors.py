"""The run store's exceptions, all in one place.

:class:`RunStoreError` is the base of every error the store raises on its own; malformed
arguments (an unknown status, a bad event) raise :class:`ValueError` instead.
"""

from __future__ import annotations


class RunStoreError(Exception):
    """Base of the run store's errors."""


class RunNotFound(RunStoreError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunStoreClosed(RunStoreError):
    """The store is not open (not yet, or any more)."""
