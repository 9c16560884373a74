"""The ``enkrypt-async`` command line (also ``python -m enkrypt_async``).

``complete PROMPT`` prints a completion (as it arrives with ``--stream``) and a
one-line guardrails summary on stderr; ``chat PROMPT`` does the same for a chat
turn, and ``chat`` alone chats over the lines of stdin. With no API key
configured they answer from the built-in emulator and say so. ``serve`` runs that
emulator.

Exit status: 0 success, 1 API or connection error, 2 bad usage or configuration
(a plain http URL to another machine without ``--allow-insecure-http``; for
``serve``, an address it cannot listen on), 3 blocked by guardrails, 130
interrupted (the ``chat`` REPL exits 0 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from .._exceptions import EnkryptError
from .._version import __version__
from . import _chat, _complete
from ._common import EXIT_INTERRUPTED, EXIT_OK, CommandError, describe_error, fail

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enkrypt-async",
        description="Talk to Enkrypt AI's guardrailed proxy from the shell.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        help="what to do (enkrypt-async COMMAND --help shows its options)",
    )
    _complete.add_parser(commands)
    _chat.add_parser(commands)

    from ..testing._serve import DESCRIPTION, add_arguments

    serve = commands.add_parser(
        "serve", help="run the local emulator", description=DESCRIPTION
    )
    add_arguments(serve)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    inp: TextIO | None = None,
) -> int:
    """Run the command line with ``argv`` and return the exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        out: Where answers go (default: stdout).
        err: Where notices, summaries and errors go (default: stderr).
        inp: Where the ``chat`` REPL reads its lines (default: stdin).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    inp = inp or sys.stdin
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from ..testing._serve import run

        return run(args, prog=parser.prog, err=err)
    interactive = args.command == "chat" and args.prompt is None
    try:
        if args.command == "chat":
            return asyncio.run(_chat.run(args, out, err, inp))
        return asyncio.run(_complete.run(args, out, err))
    except CommandError as exc:
        return fail(err, str(exc), exc.status)
    except EnkryptError as exc:
        return fail(err, *describe_error(exc))
    except KeyboardInterrupt:
        if interactive:
            return EXIT_OK  # the REPL ended its line; Ctrl-C is how one leaves it
        out.write("\n")  # end a half-printed answer before the message
        out.flush()
        return fail(err, "interrupted", EXIT_INTERRUPTED)
