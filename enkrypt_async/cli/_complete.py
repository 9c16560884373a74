"""``enkrypt-async complete PROMPT``: one completion, whole or streamed."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .._client import EnkryptClient
from .._config import ENV_API_KEY
from .._models import Completion
from .._resources.completions import CompletionAccumulator
from ._common import (
    EXIT_OK,
    add_request_options,
    guardrails_summary,
    open_client,
    print_json,
    sampling,
)

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``complete`` command to ``commands``."""
    complete = commands.add_parser(
        "complete",
        help="print a completion and its guardrails summary",
        description=(
            f"Print a completion. The key comes from ${ENV_API_KEY}; without one, "
            "a built-in local emulator answers."
        ),
    )
    complete.add_argument("prompt", help="the prompt")
    add_request_options(complete, json_help="print JSON (one line per streamed chunk)")


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the completion of ``args.prompt``, then its guardrails summary.

    Returns:
        The exit status (errors are raised).
    """
    async with open_client(args, err) as client:
        if args.stream:
            completion = await _stream(client, args, out)
        else:
            completion = await client.completions.create(
                prompt=args.prompt, **sampling(args)
            )
            if args.json:
                print_json(completion, out)
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
        prompt=args.prompt, stream=True, **sampling(args)
    )
    accumulator = CompletionAccumulator()
    async with stream:
        async for chunk in stream:
            accumulator.add(chunk)
            if args.json:
                print_json(chunk, out)
            else:
                out.write("".join(choice.text for choice in chunk.choices))
            out.flush()
    if not args.json:
        out.write("\n")
    return accumulator.result()
