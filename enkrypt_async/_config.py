"""Configuration: defaults, sentinels, `Timeout`, and the environment (read here)."""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ._exceptions import ConfigurationError, escape_controls

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_EVENT_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "USE_CLIENT_DEFAULT",
    "NotGiven",
    "Timeout",
    "UseClientDefault",
]

DEFAULT_BASE_URL: Final = "https://api.enkryptai.com/ai-proxy"
DEFAULT_MAX_RETRIES: Final = 2
#: Largest single Server-Sent Event accepted before the stream fails.
DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
#: Largest whole response body accepted, after decompression.
DEFAULT_MAX_RESPONSE_SIZE: Final = 32 * 1024 * 1024
#: Total connections the client's own pool may open (aiohttp's default is 100).
DEFAULT_POOL_LIMIT: Final = 100

ENV_API_KEY: Final = "ENKRYPT_API_KEY"
ENV_DEPLOYMENT: Final = "ENKRYPT_DEPLOYMENT"
ENV_BASE_URL: Final = "ENKRYPT_BASE_URL"
ENV_LOG: Final = "ENKRYPT_LOG"
_LOG_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}


class NotGiven(enum.Enum):
    """Type of `NOT_GIVEN`: a request parameter left out of the JSON body."""

    NOT_GIVEN = enum.auto()

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


class UseClientDefault(enum.Enum):
    """Type of `USE_CLIENT_DEFAULT`: a per-request option that keeps the client's."""

    USE_CLIENT_DEFAULT = enum.auto()

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN
"""Leave this parameter out of the request body (``None`` would send ``null``)."""

USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT
"""Keep the client's setting for this request (``None`` switches the option off)."""


def _check_seconds(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigurationError(f"Timeout.{name} must be > 0 or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeout:
    """How long a request may take, in seconds; ``None`` disables a limit.

    Attributes:
        connect: Longest time to open a connection: the name lookup (DNS), the
            TCP handshake and the TLS handshake.
        read: Longest wait for each piece of data from the server, so also the
            longest silence allowed between two stream events.
        total: Longest time for the whole request, body or stream included.
        pool: Longest wait for a free connection when the pool is full.

    The connect and pool limits are enforced together: from asking for a
    connection to holding an open one takes at most ``pool + connect`` (the one
    that is set, if the other is None), and each TCP (and TLS) handshake at most
    ``connect``.

    Examples:
        >>> Timeout(read=30.0)
        Timeout(connect=5.0, read=30.0, total=None, pool=30.0)
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    total: float | None = None
    pool: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total", "pool"):
            _check_seconds(name, getattr(self, name))

    @classmethod
    def coerce(cls, value: float | Timeout | None) -> Timeout:
        """Build a `Timeout` from what users pass as ``timeout=``.

        A plain number sets `read`; ``None`` disables every limit.
        """
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(connect=None, read=None, total=None, pool=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(
                f"timeout must be a number, a Timeout or None, not {value!r}"
            )
        return cls(read=float(value))


DEFAULT_TIMEOUT: Final = Timeout()


def _header_value(name: str, value: str) -> str:
    """Refuse values that would split or smuggle an HTTP header."""
    if any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
        raise ConfigurationError(f"{name} contains a control character (CR, LF...)")
    return value


def join_tags(tags: str | Sequence[str] | None) -> str | None:
    """Return the ``X-Enkrypt-Tags`` header value for ``tags`` (comma-joined)."""
    if tags is None:
        return None
    if isinstance(tags, str):
        return _header_value("tags", tags)
    for tag in tags:
        if not isinstance(tag, str):
            raise ConfigurationError(f"tags must be strings, got {tag!r}")
        if "," in tag:
            raise ConfigurationError(f"a tag cannot contain a comma: {tag!r}")
    return _header_value("tags", ",".join(tags))


def refresh_cache_value(refresh_cache: bool | None) -> str | None:
    """Return the ``X-Enkrypt-Refresh-Cache`` header value, or None to omit it."""
    if refresh_cache is None:
        return None
    if not isinstance(refresh_cache, bool):
        raise ConfigurationError(
            f"refresh_cache must be a bool or None, got {refresh_cache!r}"
        )
    return "true" if refresh_cache else "false"


#: RFC 9110 section 5.6.2: a header name is a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: Headers that frame the message or the connection (RFC 9110 section 7.6.1,
#: RFC 9112): the client sets them; from a caller they could smuggle a request.
FORBIDDEN_HEADERS: Final = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _header_name(what: str, name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"{what}: {escape_controls(repr(name))} is not a valid header name "
            "(RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~)"
        )
    if name.lower() in FORBIDDEN_HEADERS:
        raise ConfigurationError(
            f"{what}: {name} frames the request and is set by the client; "
            "it cannot be given"
        )
    return name


def set_headers(headers: dict[str, str], values: Mapping[str, str | None]) -> None:
    """Set ``values`` in ``headers``, replacing a header of the same name in any case.

    Header names are case-insensitive: ``user-agent`` given by a caller must
    replace our ``User-Agent``, not be sent beside it. A replaced header keeps
    the spelling already there. None removes the header.
    """
    spelled = {name.lower(): name for name in headers}
    for name, value in values.items():
        key = spelled.setdefault(name.lower(), name)
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value


def check_headers(headers: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """Validate caller-supplied headers and return them as a plain dict."""
    if headers is None:
        return {}
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(f"{what} names and values must be strings")
        checked[_header_name(what, name)] = _header_value(f"{what} {name!r}", value)
    return checked


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved connection settings of a client (arguments, else environment)."""

    api_key: str
    deployment: str | None
    base_url: str
    log_level: int | None = None

    def __repr__(self) -> str:
        # The key stays out of every repr, log line and error message.
        return f"Settings(deployment={self.deployment!r}, base_url={self.base_url!r})"

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        deployment: str | None,
        base_url: str | None,
        allow_insecure_http: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Merge explicit arguments with ``ENKRYPT_*`` environment variables."""
        env = os.environ if environ is None else environ
        key = api_key if api_key is not None else env.get(ENV_API_KEY)
        if not key:
            raise ConfigurationError(
                f"No API key: pass api_key=... or set ${ENV_API_KEY}"
            )
        dep = deployment if deployment is not None else env.get(ENV_DEPLOYMENT) or None
        url = base_url if base_url is not None else env.get(ENV_BASE_URL) or None
        url = _check_base_url(
            (url or DEFAULT_BASE_URL).rstrip("/"), allow_insecure_http
        )
        log = env.get(ENV_LOG, "").strip().lower()
        return cls(
            api_key=_header_value("api_key", key),
            deployment=None if dep is None else _header_value("deployment", dep),
            base_url=_header_value("base_url", url),
            log_level=_LOG_LEVELS.get(log),
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str, allow_insecure_http: bool) -> str:
    """Refuse URLs that are malformed or would send the key in clear text."""
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 (parsing the port validates it)
    except ValueError as exc:
        raise ConfigurationError(
            f"base_url is not a valid URL ({exc}): {escape_controls(repr(url))}"
        ) from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise ConfigurationError(
            f"base_url must be an https:// (or http://) URL with a host, got {url!r}"
        )
    if parts.username is not None or parts.query or parts.fragment:
        raise ConfigurationError(
            "base_url must not carry credentials, query or fragment"
        )
    if (
        parts.scheme == "http"
        and not allow_insecure_http
        and not _is_loopback(hostname)
    ):
        raise ConfigurationError(
            f"Refusing plain http to {hostname}: the API key would travel in "
            "clear text. Use https, or pass allow_insecure_http=True"
        )
    return url


def setup_logging(level: int | None) -> None:
    """Send the library's log records to stderr at ``level`` (from $ENKRYPT_LOG).

    Does nothing when ``level`` is None, so applications keep full control of the
    ``enkrypt_async`` logger; adds at most one handler however often it is called.
    """
    if level is None:
        return
    logger = logging.getLogger("enkrypt_async")
    logger.setLevel(level)
    if not any(getattr(h, "_enkrypt_env", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        )
        handler._enkrypt_env = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
