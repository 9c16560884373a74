"""Raw responses: ``resource.with_raw_response.create(...)``.

`RawResponse` is the HTTP response of one call, before its answer is decoded; its
`RawResponse.parse` gives what ``create`` would have returned. The wrapper asks the
pipeline for it through a private request option (`RAW_OPTION`), so each
resource's ``create`` and its typed overloads serve both.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Generic, ParamSpec, TypeVar, cast

__all__ = ["RAW_OPTION", "RawResponse", "raw_response_wrapper"]

#: The request option that makes the pipeline return a `RawResponse`.
RAW_OPTION: Final = "_raw_response"

T = TypeVar("T")
P = ParamSpec("P")

_UNPARSED: Final = object()


class RawResponse(Generic[T]):
    """The HTTP response of a call: status, headers, request id and timing.

    Returned by ``with_raw_response.create(...)`` on every resource. HTTP error
    statuses still raise at the ``await``, as with ``create``.

    Attributes:
        status_code: The HTTP status (2xx).
        headers: The response headers (a case-insensitive mapping).
        request_id: The proxy's id for the request, when it sent one.
        elapsed: From the start of the call (retries and their waits
            included) to the end of the body, or, for a stream, to its headers.
        url: The URL the request was sent to.

    Examples:
        >>> raw = await client.completions.with_raw_response.create(prompt="Hi")
        >>> raw.status_code, raw.request_id
        (200, 'req-...')
        >>> completion = raw.parse()
    """

    __slots__ = (
        "_content",
        "_parse",
        "_parsed",
        "elapsed",
        "headers",
        "request_id",
        "status_code",
        "url",
    )

    def __init__(
        self,
        *,
        status_code: int,
        headers: Mapping[str, str],
        request_id: str | None,
        elapsed: datetime.timedelta,
        url: str,
        parse: Callable[[], T],
        content: bytes | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.request_id = request_id
        self.elapsed = elapsed
        self.url = url
        self._parse = parse
        self._parsed: object = _UNPARSED
        self._content = content

    @property
    def content(self) -> bytes:
        """The body exactly as received, for a whole answer.

        It reports no error: an answer with a top-level ``error`` raised from
        ``create``, as without ``with_raw_response``. It is not parsed
        otherwise, so a gateway can send these bytes on unchanged.

        Raises:
            ValueError: This is the response of a stream, whose body is read
                through the stream `parse` returns.
        """
        if self._content is None:
            raise ValueError(
                "A stream's raw response has no content: read the stream parse() "
                "returns (its iter_data() gives each chunk's bytes)"
            )
        return self._content

    def parse(self) -> T:
        """What ``create`` returns: the decoded answer, or the stream.

        Decoded on the first call; later calls return the same object.

        Raises:
            DecodeError: The body is not the expected JSON.
        """
        if self._parsed is _UNPARSED:
            self._parsed = self._parse()
        return cast(T, self._parsed)

    def __repr__(self) -> str:
        return (
            f"<RawResponse {self.status_code} request_id={self.request_id!r} "
            f"elapsed={self.elapsed.total_seconds():.3f}s>"
        )


def raw_response_wrapper(
    create: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[RawResponse[T]]]:
    """``create`` returning the `RawResponse` of its call; same arguments and types."""

    @functools.wraps(create)
    async def call(*args: P.args, **kwargs: P.kwargs) -> RawResponse[T]:
        cast(dict[str, Any], kwargs)[RAW_OPTION] = True
        # The pipeline answers a call carrying RAW_OPTION with a RawResponse.
        return cast(RawResponse[T], await create(*args, **kwargs))

    return call
