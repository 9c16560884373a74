"""Serve the emulator until interrupted.

Shared by ``python -m enkrypt_async.testing`` and ``enkrypt-async serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from ._emulator import DEFAULT_API_KEY, DEFAULT_DEPLOYMENT, EnkryptEmulator

DESCRIPTION = "Serve a local Enkrypt AI proxy emulator until Ctrl-C."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the serving options (host, port, key, deployment, pacing...)."""
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=8080, help="default: 8080; 0 picks a free port"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--deployment", default=DEFAULT_DEPLOYMENT)
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--access-log", action="store_true", help="log requests")


async def _serve(args: argparse.Namespace) -> None:
    emulator = EnkryptEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        deployment=args.deployment,
        chunk_chars=args.chunk_chars,
        chunk_delay=args.chunk_delay,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: Ctrl-C still raises KeyboardInterrupt there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with emulator:
        print(f"base_url:   {emulator.base_url}")
        print(f"api_key:    {emulator.api_key}")
        print(f"deployment: {emulator.deployment}")
        print("The Enkrypt AI proxy emulator is running; Ctrl-C stops it.", flush=True)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    """Serve with the parsed options until interrupted; return the exit status."""
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until interrupted, and return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m enkrypt_async.testing", description=DESCRIPTION
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
