"""atheris harness: success bodies and error bodies, from arbitrary bytes.

Checks what ``tests/test_fuzz.py`` checks, for as long as you let it run:

- ``decode_answer(completion_decoder, data, None)`` returns a `Completion` or raises
  `DecodeError`, or `APIError` for a body with a top-level ``error``;
- ``error_in(data)``, run on every 200 body, never raises and returns the
  top-level ``error`` member exactly when the body is a JSON object whose
  ``error`` is not null (msgspec's generic decoder is the oracle);
- ``status_error(status, reason, headers, data)`` returns an `APIStatusError` of
  the status's class for every status 400-599, never raises, and is a
  `GuardrailsBlockedError` exactly when the body is a JSON object whose
  ``enkrypt_policy_detections`` converts.

See ``fuzz/README.md``::

    python fuzz/fuzz_decode.py -atheris_runs=100000 -dict=fuzz/json.dict
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

with atheris.instrument_imports(include=["enkrypt_async", "msgspec"]):
    import msgspec

    from enkrypt_async import (
        APIError,
        APIStatusError,
        Completion,
        DecodeError,
        GuardrailsBlockedError,
    )
    from enkrypt_async._exceptions import status_error_class
    from enkrypt_async._models.completions import completion_decoder
    from enkrypt_async._models.guardrails import convert_detections
    from enkrypt_async._responses import (
        DECODE_ERRORS,
        decode_answer,
        error_in,
        status_error,
    )


def converts(raw: bytes) -> bool:
    """Whether ``raw`` is a JSON object whose detections read as detections."""
    try:
        body = msgspec.json.decode(raw)
    except DECODE_ERRORS:
        return False
    detections = body.get("enkrypt_policy_detections") if type(body) is dict else None
    if not isinstance(detections, dict):
        return False
    try:
        convert_detections(detections)
    except msgspec.ValidationError:
        return False
    return True


def check(status: int, data: bytes) -> None:
    """The three properties for one body (raises AssertionError on a breach)."""
    try:
        completion = decode_answer(completion_decoder, data, None)
    except (DecodeError, APIError):
        pass
    else:
        assert isinstance(completion, Completion), completion
    found = error_in(data)
    try:
        whole = msgspec.json.decode(data)
    except DECODE_ERRORS:
        whole = None
    assert found == (whole.get("error") if isinstance(whole, dict) else None), found
    error = status_error(status, "Reason", {"x-request-id": "req-1"}, data)
    assert isinstance(error, status_error_class(status)), error
    assert isinstance(error, APIStatusError)
    assert error.status_code == status
    assert error.request_id == "req-1"
    assert str(error).startswith(f"HTTP {status}")
    assert isinstance(error, GuardrailsBlockedError) == converts(data), error


def test_one_input(data: bytes) -> None:
    """One fuzz case: a status, then the body."""
    fdp = atheris.FuzzedDataProvider(data)
    status = fdp.ConsumeIntInRange(400, 599)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    check(status, body)


def main() -> None:
    """Run the fuzzer with libFuzzer's command line (``-atheris_runs=N``...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
