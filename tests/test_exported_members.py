"""The public API: every name of shared/API.md is exported, and only on purpose."""

from __future__ import annotations

import enkrypt_async
import enkrypt_async.sse

#: The names the API contract fixes (shared/API.md); never removed or renamed.
CONTRACT = {
    "EnkryptClient",
    "Timeout",
    "Completion",
    "CompletionChoice",
    "CompletionStream",
    "Usage",
    "PolicyDetections",
    "GuardrailsReport",
    "GuardrailsSummary",
    "EnkryptError",
    "ConfigurationError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "GuardrailsBlockedError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamError",
    "DecodeError",
}


def test_all_is_sorted_and_complete() -> None:
    exported = enkrypt_async.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(enkrypt_async, name), name


def test_every_contract_name_is_exported() -> None:
    assert set(enkrypt_async.__all__) >= CONTRACT


def test_public_names_are_not_private_modules() -> None:
    public = {
        name
        for name in dir(enkrypt_async)
        # pytest's assertion rewriting adds "@py_builtins" to plugin packages.
        if not name.startswith(("_", "@"))
        and name not in {"cli", "fastapi", "otel", "sse", "testing"}
    }
    assert public == set(enkrypt_async.__all__) - {"__version__"}


def test_exported_classes_claim_the_package_as_home() -> None:
    for name in enkrypt_async.__all__:
        value = getattr(enkrypt_async, name)
        module = getattr(value, "__module__", "")
        # On 3.10 a generic alias such as dict[str, float] passes isinstance(type).
        if isinstance(value, type) and getattr(value, "__origin__", None) is None:
            assert module.startswith("enkrypt_async"), name


def test_sse_module_exports_the_decoder() -> None:
    assert enkrypt_async.sse.__all__ == ["SSEDecoder", "ServerSentEvent"]


def test_errors_subclass_the_stdlib_ones_for_plain_except() -> None:
    assert issubclass(enkrypt_async.APITimeoutError, TimeoutError)
    assert issubclass(enkrypt_async.ConfigurationError, ValueError)
    assert issubclass(enkrypt_async.ClientClosedError, RuntimeError)
    for name in CONTRACT:
        value = getattr(enkrypt_async, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, enkrypt_async.EnkryptError), name
