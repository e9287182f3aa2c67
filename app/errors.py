"""The service's client-error type: a request the client got wrong, answered with 422.

Code that checks a request's values raises :class:`ClientError` with a message naming the parameter;
``create_app`` turns exactly this type into a 422. Every other exception is an internal error: the
request middleware logs its trace and the answer is a 500, so a bug never looks like bad input.
"""

from __future__ import annotations


class ClientError(ValueError):
    """A request parameter is invalid; the message names it (``"k: must be at least 1, got 0"``).

    A ValueError, so offline callers of the engine (evaluation, scripts) may keep catching that.
    """
