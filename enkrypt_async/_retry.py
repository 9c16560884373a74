"""Pure retry arithmetic: which answers are retried, and how long to wait first.

No I/O and no clock of its own: callers pass the time and the randomness, so every
function here is deterministic and unit-tested.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Final

__all__ = [
    "INITIAL_BACKOFF",
    "MAX_BACKOFF",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "backoff_delay",
    "retry_after",
    "retry_delay",
]

#: Statuses worth another attempt: timeouts, conflicts, rate limits, gateway trouble.
RETRY_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 8.0
#: A server asking for a longer pause than this fails at once instead.
MAX_RETRY_AFTER: Final = 60.0


def backoff_delay(retries_done: int, jitter: float) -> float:
    """Exponential backoff: 0.5 s doubling per retry, capped at 8 s, minus jitter.

    Args:
        retries_done: How many retries already happened (0 before the first).
        jitter: A number in [0, 1); up to a quarter of the delay is taken off, so
            clients that failed together do not retry together.
    """
    if retries_done < 0 or not 0.0 <= jitter < 1.0:
        raise ValueError("retries_done must be >= 0 and jitter in [0, 1)")
    delay = min(INITIAL_BACKOFF * 2.0 ** min(retries_done, 32), MAX_BACKOFF)
    return delay * (1.0 - 0.25 * jitter)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The pause the server asked for, in seconds, or None when it asked none.

    Reads ``retry-after-ms`` (milliseconds), then ``Retry-After`` as seconds or as
    an HTTP date (RFC 9110 section 10.2.3), relative to ``now`` (a POSIX time).
    ``headers`` must look names up case-insensitively (aiohttp's do).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            millis = float(raw_ms)
        except ValueError:
            pass
        else:
            if millis >= 0 and millis == millis:  # not negative, not NaN
                return millis / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    retries_done: int,
    headers: Mapping[str, str] | None,
    *,
    now: float,
    jitter: float,
) -> float | None:
    """How long to wait before the next attempt, or None to give up at once.

    A ``Retry-After`` within `MAX_RETRY_AFTER` is honoured as given; a longer one
    means giving up (the caller raises the status error). Without one, use
    `backoff_delay`.
    """
    if headers is not None:
        asked = retry_after(headers, now)
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
    return backoff_delay(retries_done, jitter)
