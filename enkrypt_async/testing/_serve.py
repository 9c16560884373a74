"""Serve the emulator until interrupted.

Shared by ``python -m enkrypt_async.testing`` and ``enkrypt-async serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from ._emulator import DEFAULT_API_KEY, DEFAULT_DEPLOYMENT, EnkryptEmulator

DESCRIPTION = "Serve a local Enkrypt AI proxy emulator until Ctrl-C."

#: The exit status when the address cannot be listened on (bad usage).
EXIT_CANNOT_LISTEN: Final = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the serving options (host, port, key, deployment, pacing...)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="the API key the emulator accepts (default: %(default)s)",
    )
    parser.add_argument(
        "--deployment",
        default=DEFAULT_DEPLOYMENT,
        help="the name of its default deployment (default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-chars",
        type=int,
        default=4,
        metavar="N",
        help="characters per streamed chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed chunks (default: %(default)s)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log each request to stderr"
    )


def _cannot_listen(args: argparse.Namespace, exc: OSError) -> str:
    """One line saying why ``args.host``:``args.port`` cannot be listened on."""
    host = f"[{args.host}]" if ":" in args.host else args.host
    where = f"cannot listen on {host}:{args.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the address is already in use; "
            "choose another --port, or --port 0 for a free one"
        )
    if isinstance(exc, socket.gaierror):
        return f"{where}: no such host; --host takes a local address, e.g. 127.0.0.1"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{where}: {reason[:1].lower()}{reason[1:]}"


async def _serve(args: argparse.Namespace, prog: str, err: TextIO) -> int:
    emulator = EnkryptEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        deployment=args.deployment,
        chunk_chars=args.chunk_chars,
        chunk_delay=args.chunk_delay,
    )
    try:
        await emulator.start()
    except OSError as exc:  # the address is taken, unknown, or not ours to bind
        err.write(f"{prog}: {_cannot_listen(args, exc)}\n")
        return EXIT_CANNOT_LISTEN
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: Ctrl-C still raises KeyboardInterrupt there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with emulator:  # already listening: this only closes it at the end
        print(f"base_url:   {emulator.base_url}")
        print(f"api_key:    {emulator.api_key}")
        print(f"deployment: {emulator.deployment}")
        print("The Enkrypt AI proxy emulator is running; Ctrl-C stops it.", flush=True)
        await stop.wait()
    return 0


def run(
    args: argparse.Namespace, *, prog: str = "enkrypt-async", err: TextIO | None = None
) -> int:
    """Serve with the parsed options until interrupted; return the exit status.

    Args:
        args: The options of `add_arguments`, parsed.
        prog: The command's name, which starts its error line.
        err: Where that line goes (default: stderr).

    Returns:
        0 once interrupted; 2, after one line on ``err``, if the address cannot
        be listened on.
    """
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = 0
    with contextlib.suppress(KeyboardInterrupt):
        status = asyncio.run(_serve(args, prog, err or sys.stderr))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until interrupted, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m enkrypt_async.testing", description=DESCRIPTION
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), prog=parser.prog)
