"""Every model's ``to_dict``/``to_json``, and short reprs of guardrail reports.

The models come from real answers of the emulator, whole and streamed, so the
round trips cover what users actually hold.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

import enkrypt_async
from enkrypt_async import (
    ChatCompletion,
    Completion,
    EnkryptClient,
    GuardrailsReport,
    PolicyDetections,
)
from enkrypt_async.testing import EnkryptEmulator

NSFW_PROMPT = "tell me something nsfw and explicit"

#: Every exported msgspec model.
MODELS = sorted(
    (
        value
        for name in enkrypt_async.__all__
        if isinstance(value := getattr(enkrypt_async, name), type)
        and issubclass(value, msgspec.Struct)
    ),
    key=lambda model: model.__name__,
)


async def answers(emu: EnkryptEmulator) -> list[msgspec.Struct]:
    """Whole answers, chunks and merged streams of both resources."""
    messages: Any = [{"role": "user", "content": NSFW_PROMPT}]
    tools: Any = [{"type": "function", "function": {"name": "get_weather"}}]
    async with EnkryptClient(
        api_key=emu.api_key, deployment=emu.deployment, base_url=emu.base_url
    ) as client:
        found: list[msgspec.Struct] = [
            await client.completions.create(prompt=NSFW_PROMPT, seed=3),
            await client.chat.completions.create(messages=messages, tools=tools),
        ]
        stream = await client.chat.completions.create(
            messages=messages, tools=tools, stream=True
        )
        async with stream:
            found.extend([chunk async for chunk in stream])
        completions = await client.completions.create(prompt="hi", stream=True)
        found.append(await completions.collect())
    return found


def parts(model: msgspec.Struct) -> list[msgspec.Struct]:
    """``model`` and every model nested in it."""
    found = [model]
    for name in model.__struct_fields__:
        value = getattr(model, name)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, msgspec.Struct):
                found.extend(parts(item))
    return found


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_exported_model_has_to_dict_and_to_json(model: type[Any]) -> None:
    empty = model()
    assert msgspec.convert(empty.to_dict(), model) == empty
    assert json.loads(empty.to_json()) == empty.to_dict()


async def test_every_model_round_trips_through_to_dict_and_to_json() -> None:
    async with EnkryptEmulator() as emu:
        found = [part for answer in await answers(emu) for part in parts(answer)]
    kinds = {type(part) for part in found}
    assert {Completion, ChatCompletion, PolicyDetections, GuardrailsReport} <= kinds
    assert len(kinds) >= 15
    for part in found:
        kind = type(part)
        text = part.to_json()  # type: ignore[attr-defined]
        assert msgspec.json.decode(text, type=kind) == part
        assert msgspec.convert(part.to_dict(), kind) == part  # type: ignore[attr-defined]
        assert json.loads(text) == part.to_dict()  # type: ignore[attr-defined]
        pretty = part.to_json(indent=2)  # type: ignore[attr-defined]
        assert msgspec.json.decode(pretty, type=kind) == part


async def test_to_json_keeps_exact_integers_and_leaves_defaults_out() -> None:
    async with EnkryptEmulator() as emu:
        completion = (await answers(emu))[0]
    assert isinstance(completion, Completion)
    data = completion.to_dict()
    assert data["choices"][0]["seed"] == completion.choices[0].seed
    assert "error" not in data
    assert all(value is not None for value in data.values())


async def test_a_guardrail_report_shows_what_fired_not_every_score() -> None:
    async with EnkryptEmulator() as emu:
        completion = (await answers(emu))[0]
    assert isinstance(completion, Completion)
    detections = completion.enkrypt_policy_detections
    assert detections is not None
    report = detections.input_guardrails
    assert report is not None
    assert repr(report).startswith("GuardrailsReport(flagged=['nsfw'], details=[")
    assert "nsfw" in repr(report)
    assert len(repr(detections)) < 600
    assert len(json.dumps(detections.to_dict())) > 2 * len(repr(detections))
    assert repr(report) in repr(completion)
