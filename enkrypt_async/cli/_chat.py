"""``enkrypt-async chat [PROMPT]``: one chat turn, or a conversation on stdin.

With a prompt, one turn is asked and answered, as ``complete`` does. Without one,
the command is a small REPL: each line read is a user turn, sent with the whole
conversation so far; the answer is printed and kept for the next turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Final, TextIO

from .._client import EnkryptClient
from .._config import ENV_API_KEY
from .._exceptions import GuardrailsBlockedError
from .._models import ChatCompletion, ChoiceDelta
from .._params import ChatCompletionMessageParam
from .._resources.chat import ChatCompletionAccumulator
from ._common import (
    EXIT_OK,
    add_request_options,
    describe_error,
    fail,
    guardrails_summary,
    json_line,
    open_client,
    sampling,
)

__all__ = ["add_parser", "run"]

#: What the REPL shows before each line, on stderr, when stdin is a terminal.
PROMPT: Final = "you> "
#: Lines that end the REPL, as end of input does.
EXIT_COMMANDS: Final = frozenset({"/exit", "/quit"})


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chat`` command to ``commands``."""
    chat = commands.add_parser(
        "chat",
        help="print a chat answer, or chat over the lines of stdin",
        description=(
            "Print a chat answer and its guardrails summary. Without PROMPT, read "
            "one user turn per line from stdin and keep the conversation, until "
            f"end of input, {' or '.join(sorted(EXIT_COMMANDS))}, or Ctrl-C. "
            f"The key comes from ${ENV_API_KEY}; without one, a built-in local "
            "emulator answers."
        ),
    )
    chat.add_argument(
        "prompt", nargs="?", help="the user message; omit it to chat interactively"
    )
    chat.add_argument(
        "--system", metavar="TEXT", help="a system message to open the conversation"
    )
    add_request_options(
        chat,
        json_help=(
            "print each answer as one line of JSON (with --stream, the chunks merged)"
        ),
    )


async def run(args: argparse.Namespace, out: TextIO, err: TextIO, inp: TextIO) -> int:
    """Answer ``args.prompt``, or chat over the lines of ``inp`` without one.

    Args:
        args: The parsed options.
        out: Where the answers go.
        err: Where notices, guardrails summaries and blocks go.
        inp: The user's lines, when there is no prompt.

    Returns:
        The exit status (errors other than a block in the REPL are raised).
    """
    async with open_client(args, err) as client:
        messages = _opening(args)
        if args.prompt is None:
            return await _repl(client, args, messages, out, err, inp)
        messages.append({"role": "user", "content": args.prompt})
        completion = await _answer(client, args, messages, _Output(out))
    err.write(guardrails_summary(completion.enkrypt_policy_detections) + "\n")
    return EXIT_OK


def _opening(args: argparse.Namespace) -> list[ChatCompletionMessageParam]:
    if args.system is None:
        return []
    return [{"role": "system", "content": args.system}]


class _Output:
    """Writes an answer to ``out``, remembering whether its last line is open."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.line_open = False

    def write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self.line_open = not text.endswith("\n")

    def end_line(self) -> None:
        """Write a newline, unless at the start of a line."""
        if self.line_open:
            self.write("\n")


def _text(delta: ChoiceDelta) -> str:
    return (delta.content or "") + (delta.refusal or "")


def _answer_text(completion: ChatCompletion) -> str:
    if not completion.choices:
        return ""
    message = completion.choices[0].message
    return (message.content or "") + (message.refusal or "")


async def _answer(
    client: EnkryptClient,
    args: argparse.Namespace,
    messages: list[ChatCompletionMessageParam],
    out: _Output,
) -> ChatCompletion:
    """Ask for the answer to ``messages``, print it and return it whole."""
    if not args.stream:
        completion = await client.chat.completions.create(
            messages=messages, **sampling(args)
        )
    else:
        stream = await client.chat.completions.create(
            messages=messages, stream=True, **sampling(args)
        )
        accumulator = ChatCompletionAccumulator()
        async with stream:
            async for chunk in stream:
                accumulator.add(chunk)
                if not args.json:
                    out.write("".join(_text(choice.delta) for choice in chunk.choices))
        completion = accumulator.result()
    if args.json:
        out.write(json_line(completion))
    else:
        if not args.stream:
            out.write(_answer_text(completion))
        out.write("\n")  # even after an empty answer: one line per answer
    return completion


async def _repl(
    client: EnkryptClient,
    args: argparse.Namespace,
    messages: list[ChatCompletionMessageParam],
    out: TextIO,
    err: TextIO,
    inp: TextIO,
) -> int:
    """Chat over the lines of ``inp``; return 0 at its end or on an exit command.

    A blocked turn is reported on ``err`` and forgotten. On Ctrl-C, the open line
    is ended and the interruption re-raised, for the caller to exit quietly.
    """
    terminal = inp.isatty()
    lines = _LineReader(inp)
    answer = _Output(out)
    if terminal:
        err.write(
            "enkrypt-async: one message per line; "
            f"{' or '.join(sorted(EXIT_COMMANDS))} or Ctrl-D ends\n"
        )
    try:
        while True:
            if terminal:
                err.write(PROMPT)
                err.flush()
            line = await lines.readline()
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            if text in EXIT_COMMANDS:
                return EXIT_OK
            messages.append({"role": "user", "content": text})
            try:
                completion = await _answer(client, args, messages, answer)
            except GuardrailsBlockedError as exc:
                messages.pop()
                fail(err, *describe_error(exc))
                continue
            messages.append({"role": "assistant", "content": _answer_text(completion)})
            err.write(guardrails_summary(completion.enkrypt_policy_detections) + "\n")
    except (KeyboardInterrupt, asyncio.CancelledError):
        if answer.line_open:
            answer.end_line()
        elif terminal:
            err.write("\n")
        raise
    if terminal:
        err.write("\n")  # after the prompt Ctrl-D left open
    return EXIT_OK


class _LineReader:
    """Lines of a text stream, read by a daemon thread.

    Not by the loop's default executor: `asyncio.run` waits for that executor at
    exit, so a read blocked on the terminal would hold up the exit after Ctrl-C.
    A daemon thread is abandoned instead; it reads the file descriptor directly,
    so it holds no lock of ``sys.stdin`` that the interpreter's exit would wait for.
    """

    def __init__(self, stream: TextIO) -> None:
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(
            target=self._read, args=(stream,), name="enkrypt-async-stdin", daemon=True
        ).start()

    async def readline(self) -> str | None:
        """Return the next line, without its line ending; None at the end."""
        return await self._lines.get()

    def _read(self, stream: TextIO) -> None:
        try:
            for line in _lines_of(stream):
                self._put(line)
        except (OSError, ValueError):
            pass  # a terminal gone or a stream closed: that is the end of input
        finally:
            self._put(None)

    def _put(self, line: str | None) -> None:
        # RuntimeError: the loop is closed, nobody is reading any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)


def _lines_of(stream: TextIO) -> Iterator[str]:
    """Yield the lines of ``stream`` without line endings, reading its descriptor."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: no descriptor
        for line in iter(stream.readline, ""):
            yield line.rstrip("\r\n")
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    pending = bytearray()
    while data := os.read(fd, 1 << 16):
        pending += data
        if b"\n" not in data:
            continue
        *complete, rest = pending.split(b"\n")
        pending = bytearray(rest)
        for raw in complete:
            yield raw.rstrip(b"\r").decode(encoding, "replace")
    if pending:
        yield pending.rstrip(b"\r").decode(encoding, "replace")
