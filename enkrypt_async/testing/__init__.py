"""A local, offline emulator of Enkrypt AI's guardrailed proxy, for tests.

`EnkryptEmulator` serves `POST /ai-proxy/completions` and
`POST /ai-proxy/chat/completions` on 127.0.0.1 like the real proxy: `apikey` and
`X-Enkrypt-Deployment` headers, deterministic text and tool calls (streamed as
Server-Sent Events or not), guardrail detections computed on the prompt (for chat,
the last user message) and on the generated text, input blocking, and injected
faults.

Examples:
    ```python
    import aiohttp
    from enkrypt_async.testing import EnkryptEmulator, Fault

    rate_limited = Fault("status", status=429, retry_after=1, on_requests={1})
    async with EnkryptEmulator(faults=[rate_limited]) as emu:
        async with aiohttp.ClientSession(headers=emu.headers) as session:
            url = f"{emu.base_url}/completions"
            async with session.post(url, json={"prompt": "hi"}) as response:
                assert response.status == 429  # the first request is rate limited
            async with session.post(url, json={"prompt": "hi", "seed": 1}) as response:
                completion = await response.json()
        assert emu.requests[1].body["seed"] == 1
    ```

Run it standalone with `python -m enkrypt_async.testing --port 8080`.
"""

from ._emulator import (
    DEFAULT_API_KEY,
    DEFAULT_DEPLOYMENT,
    EmulatorStats,
    EnkryptEmulator,
    RecordedRequest,
)
from ._faults import Fault, FaultKind
from ._guardrails import ALL_DETECTORS, DeploymentPolicy

__all__ = [
    "ALL_DETECTORS",
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENT",
    "DeploymentPolicy",
    "EmulatorStats",
    "EnkryptEmulator",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]
