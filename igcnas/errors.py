"""The one error type for bad input.

``BadInput`` marks a mistake the user can fix (an unknown family, a K that does not divide the
width, a storage URL that does not parse): the command line reports it on one line with exit
status 2. Any other exception is an internal error and is reported as one (exit status 1, with a
traceback under ``-v``), so a bug never passes for a typo. It subclasses ``ValueError`` so that
library callers who catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["BadInput", "SearchFailed"]


class BadInput(ValueError):
    """Input that is not allowed; the message names the field and the allowed values."""


class SearchFailed(RuntimeError):
    """Every trial of a run failed (not bad input, not a bug in igc-nas): the last reason is in the message."""
