"""What the commands share: request options, the client, output, exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from typing import TextIO, TypedDict, TypeVar

import msgspec

from .._client import EnkryptClient
from .._config import ENV_API_KEY, NOT_GIVEN, NotGiven
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    ConfigurationError,
    EnkryptError,
    GuardrailsBlockedError,
)
from .._models import PolicyDetections

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_BLOCKED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "Sampling",
    "add_request_options",
    "describe_error",
    "fail",
    "guardrails_summary",
    "json_line",
    "open_client",
    "print_json",
    "sampling",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3
EXIT_INTERRUPTED = 130

#: Pacing of the emulator's stream in a terminal, so tokens visibly arrive.
_DEMO_CHUNK_DELAY = 0.015


def add_request_options(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """Add the options every asking command takes, `--stream` to `--emulator`.

    Args:
        parser: The command's parser.
        json_help: The help of `--json`, which differs per command.
    """
    parser.add_argument("--stream", action="store_true", help="print as it arrives")
    parser.add_argument("--model", help="model name (usually set by the deployment)")
    parser.add_argument(
        "--max-tokens", type=int, metavar="N", help="most tokens to generate"
    )
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument(
        "--deployment", help="deployment name (default: $ENKRYPT_DEPLOYMENT)"
    )
    parser.add_argument(
        "--base-url",
        help="proxy URL (default: $ENKRYPT_BASE_URL, else Enkrypt AI's)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help=(
            "accept a plain http:// proxy URL on another machine "
            "(the API key then travels unencrypted)"
        ),
    )
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--emulator", action="store_true", help="use the local emulator even with a key"
    )


class Sampling(TypedDict):
    """The keyword arguments of ``create`` that `add_request_options` sets."""

    model: str | NotGiven
    max_tokens: int | NotGiven
    seed: int | NotGiven


def _given(value: T | None) -> T | NotGiven:
    return NOT_GIVEN if value is None else value


def sampling(args: argparse.Namespace) -> Sampling:
    """Return the ``create`` arguments of the parsed options (unset ones left out)."""
    return Sampling(
        model=_given(args.model),
        max_tokens=_given(args.max_tokens),
        seed=_given(args.seed),
    )


class CommandError(Exception):
    """A failure already worded for the user, with the exit status it means.

    Attributes:
        status: The exit status.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace, err: TextIO
) -> AsyncIterator[EnkryptClient]:
    """Open the client the options and the environment ask for, for a block.

    Without ``$ENKRYPT_API_KEY``, or with `--emulator`, start the built-in
    emulator (pacing its stream with `--stream`) and say so on ``err``. Both
    are closed when the block ends.

    Args:
        args: The parsed options of `add_request_options`.
        err: Where the emulator notice goes.

    Yields:
        The open client.

    Raises:
        ConfigurationError: The configuration is incomplete or malformed.
        CommandError: A plain http URL was refused, or the proxy could not be
            reached from the block: the line says which URL and why.
    """
    async with contextlib.AsyncExitStack() as stack:
        if args.emulator or not os.environ.get(ENV_API_KEY):
            from ..testing import EnkryptEmulator

            emulator = await stack.enter_async_context(
                EnkryptEmulator(chunk_delay=_DEMO_CHUNK_DELAY if args.stream else 0.0)
            )
            err.write(
                f"enkrypt-async: no ${ENV_API_KEY} set, so the built-in local "
                "emulator answers (set it to use Enkrypt AI)\n"
                if not args.emulator
                else "enkrypt-async: answering from the built-in local emulator\n"
            )
            client = EnkryptClient(
                api_key=emulator.api_key,
                deployment=emulator.deployment,
                base_url=emulator.base_url,
            )
        else:
            client = _proxy_client(args)
        async with client:
            try:
                yield client
            except APIConnectionError as exc:
                message = _connection_failure(exc, client.base_url)
                raise CommandError(message, EXIT_API_ERROR) from exc


def _proxy_client(args: argparse.Namespace) -> EnkryptClient:
    """The client of the configured proxy; names `--allow-insecure-http` if needed."""

    def build(*, allow_insecure_http: bool) -> EnkryptClient:
        return EnkryptClient(
            deployment=args.deployment,
            base_url=args.base_url,
            allow_insecure_http=allow_insecure_http,
        )

    try:
        return build(allow_insecure_http=args.allow_insecure_http)
    except ConfigurationError as exc:
        refused = exc
    # The flag lifts the plain-http check alone: if the settings pass with it,
    # that check refused them, and the flag is the way out to name.
    try:
        url = build(allow_insecure_http=True).base_url
    except ConfigurationError:
        url = None
    if url is None:
        raise refused
    raise CommandError(
        f"configuration: refusing plain http to {urllib.parse.urlsplit(url).hostname}: "
        "the API key would travel unencrypted; use an https:// URL, or pass "
        "--allow-insecure-http if the network to it is trusted",
        EXIT_USAGE,
    ) from refused


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _connection_failure(exc: APIConnectionError, url: str) -> str:
    """One line for ``exc``, worded from the cause the library chained to it."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return f"cannot connect to {url}: connection refused"
        if isinstance(cause, socket.gaierror):
            if cause.errno in _NOT_FOUND:
                return f"cannot connect to {url}: host name not found"
            return f"cannot connect to {url}: name lookup failed ({cause.strerror})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"cannot connect to {url}: TLS certificate not trusted "
                f"({cause.verify_message})"
            )
    root = causes[-1]
    if isinstance(root, OSError) and root.errno and root.errno > 0:
        reason = os.strerror(root.errno)
        return f"connection to {url} failed: {reason[:1].lower()}{reason[1:]}"
    return f"connection to {url} failed: {exc}"


#: ``getaddrinfo`` errors that mean the name does not exist (EAI_NODATA: not on
#: every platform).
_NOT_FOUND = frozenset(
    code
    for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def _side(name: str, report: object, flagged: list[str]) -> str:
    if report is None:
        return f"{name}: not checked"
    return f"{name}: " + (", ".join(flagged) + " flagged" if flagged else "clean")


def guardrails_summary(detections: PolicyDetections | None) -> str:
    """One line saying which guardrails fired on the prompt and on the answer."""
    if detections is None:
        return "guardrails: no report"
    flagged = detections.flagged
    return "guardrails: " + "; ".join(
        (
            _side("input", detections.input_guardrails, flagged["input"]),
            _side("output", detections.output_guardrails, flagged["output"]),
        )
    )


def json_line(answer: msgspec.Struct) -> str:
    """Return ``answer`` as one line of JSON, with its newline."""
    return msgspec.json.encode(answer).decode() + "\n"


def print_json(answer: msgspec.Struct, out: TextIO) -> None:
    """Write ``answer`` to ``out`` as one line of JSON."""
    out.write(json_line(answer))


def describe_error(exc: EnkryptError) -> tuple[str, int]:
    """Return the one-line message of ``exc`` and the exit status it means."""
    if isinstance(exc, GuardrailsBlockedError):
        return f"blocked by guardrails: {exc}", EXIT_BLOCKED
    if isinstance(exc, ConfigurationError):
        return f"configuration: {exc}", EXIT_USAGE
    if isinstance(exc, APIStatusError):
        rid = f" (request id {exc.request_id})" if exc.request_id else ""
        return f"{exc}{rid}", EXIT_API_ERROR
    return f"{type(exc).__name__}: {exc}", EXIT_API_ERROR


def fail(err: TextIO, message: str, status: int) -> int:
    """Write ``message`` as one ``enkrypt-async:`` line; return ``status``."""
    err.write(f"enkrypt-async: {message}\n")
    return status
