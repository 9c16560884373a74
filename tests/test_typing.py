"""Static typing: mypy --strict checks these; at run time they only have to import."""

from __future__ import annotations

from typing import TYPE_CHECKING

from enkrypt_async import Completion, CompletionStream, EnkryptClient, Stream

if TYPE_CHECKING:
    from typing_extensions import assert_type


async def _create_is_typed_by_stream(client: EnkryptClient, flag: bool) -> None:
    """Never run: mypy proves the overloads give each call its exact type."""
    whole = await client.completions.create(prompt="x")
    assert_type(whole, Completion)
    stream = await client.completions.create(prompt="x", stream=True)
    assert_type(stream, CompletionStream)
    explicit = await client.completions.create(prompt="x", stream=False)
    assert_type(explicit, Completion)
    async for chunk in stream:
        assert_type(chunk, Completion)
    merged = await stream.collect()
    assert_type(merged, Completion)
    either = await client.completions.create(prompt="x", stream=flag)
    assert_type(either, Completion | CompletionStream)


def test_completion_stream_is_the_generic_stream_of_completions() -> None:
    assert issubclass(CompletionStream, Stream)
    assert Stream[Completion] is not None  # generic over its chunk type
