"""The ``enkrypt-async`` command line (also ``python -m enkrypt_async``).

``complete PROMPT`` prints a completion (as it arrives with ``--stream``) and a
one-line guardrails summary on stderr; with no API key configured it answers from
the built-in emulator and says so. ``serve`` runs that emulator.

Exit status: 0 success, 1 API or connection error, 2 bad usage or configuration,
3 blocked by guardrails, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO, TypeVar

import msgspec

from .._client import EnkryptClient
from .._config import ENV_API_KEY, NOT_GIVEN, NotGiven
from .._exceptions import (
    APIStatusError,
    ConfigurationError,
    EnkryptError,
    GuardrailsBlockedError,
)
from .._models import Completion, PolicyDetections
from .._resources.completions import CompletionAccumulator
from .._version import __version__

__all__ = ["main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3
EXIT_INTERRUPTED = 130

#: Pacing of the emulator's stream in a terminal, so tokens visibly arrive.
_DEMO_CHUNK_DELAY = 0.015


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enkrypt-async",
        description="Talk to Enkrypt AI's guardrailed proxy from the shell.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    complete = commands.add_parser(
        "complete",
        help="print a completion and its guardrails summary",
        description=(
            f"Print a completion. The key comes from ${ENV_API_KEY}; without one, "
            "a built-in local emulator answers."
        ),
    )
    complete.add_argument("prompt", help="the prompt")
    complete.add_argument("--stream", action="store_true", help="print as it arrives")
    complete.add_argument("--model", help="model name (usually set by the deployment)")
    complete.add_argument("--max-tokens", type=int, metavar="N")
    complete.add_argument("--seed", type=int)
    complete.add_argument("--deployment", help="default: $ENKRYPT_DEPLOYMENT")
    complete.add_argument("--base-url", help="default: $ENKRYPT_BASE_URL or Enkrypt's")
    complete.add_argument(
        "--json", action="store_true", help="print JSON (one line per streamed chunk)"
    )
    complete.add_argument(
        "--emulator", action="store_true", help="use the local emulator even with a key"
    )

    from ..testing._serve import DESCRIPTION, add_arguments

    serve = commands.add_parser(
        "serve", help="run the local emulator", description=DESCRIPTION
    )
    add_arguments(serve)
    return parser


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


def _print_json(completion: Completion, out: TextIO) -> None:
    out.write(msgspec.json.encode(completion).decode() + "\n")


def _given(value: T | None) -> T | NotGiven:
    return NOT_GIVEN if value is None else value


async def _complete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with contextlib.AsyncExitStack() as stack:
        if args.emulator or not os.environ.get(ENV_API_KEY):
            from ..testing import EnkryptEmulator

            emulator = await stack.enter_async_context(
                EnkryptEmulator(chunk_delay=_DEMO_CHUNK_DELAY if args.stream else 0.0)
            )
            err.write(
                f"enkrypt-async: no ${ENV_API_KEY} set, so the built-in local emulator "
                "answers (set it to use Enkrypt AI)\n"
                if not args.emulator
                else "enkrypt-async: answering from the built-in local emulator\n"
            )
            client = EnkryptClient(
                api_key=emulator.api_key,
                deployment=emulator.deployment,
                base_url=emulator.base_url,
            )
        else:
            client = EnkryptClient(deployment=args.deployment, base_url=args.base_url)
        await stack.enter_async_context(client)
        if args.stream:
            completion = await _stream(client, args, out)
        else:
            completion = await client.completions.create(
                prompt=args.prompt,
                model=_given(args.model),
                max_tokens=_given(args.max_tokens),
                seed=_given(args.seed),
            )
            if args.json:
                _print_json(completion, out)
            else:
                out.write(completion.choices[0].text if completion.choices else "")
                out.write("\n")
    out.flush()
    err.write(guardrails_summary(completion.enkrypt_policy_detections) + "\n")
    return EXIT_OK


async def _stream(
    client: EnkryptClient,
    args: argparse.Namespace,
    out: TextIO,
) -> Completion:
    stream = await client.completions.create(
        prompt=args.prompt,
        model=_given(args.model),
        max_tokens=_given(args.max_tokens),
        seed=_given(args.seed),
        stream=True,
    )
    accumulator = CompletionAccumulator()
    async with stream:
        async for chunk in stream:
            accumulator.add(chunk)
            if args.json:
                _print_json(chunk, out)
            else:
                out.write("".join(choice.text for choice in chunk.choices))
            out.flush()
    if not args.json:
        out.write("\n")
    return accumulator.result()


def _fail(err: TextIO, message: str, status: int) -> int:
    err.write(f"enkrypt-async: {message}\n")
    return status


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line with ``argv`` and return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from ..testing._serve import run

        return run(args)
    try:
        return asyncio.run(_complete(args, out, err))
    except GuardrailsBlockedError as exc:
        return _fail(err, f"blocked by guardrails: {exc}", EXIT_BLOCKED)
    except ConfigurationError as exc:
        return _fail(err, f"configuration: {exc}", EXIT_USAGE)
    except APIStatusError as exc:
        rid = f" (request id {exc.request_id})" if exc.request_id else ""
        return _fail(err, f"{exc}{rid}", EXIT_API_ERROR)
    except EnkryptError as exc:
        return _fail(err, f"{type(exc).__name__}: {exc}", EXIT_API_ERROR)
    except KeyboardInterrupt:
        out.write("\n")  # end a half-printed answer before the message
        out.flush()
        return _fail(err, "interrupted", EXIT_INTERRUPTED)
