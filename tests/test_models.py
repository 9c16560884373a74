"""The response Structs and their decoders (enkrypt_async._models)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from enkrypt_async import _models
from enkrypt_async._models import (
    Completion,
    GuardrailsDetails,
    GuardrailsReport,
    GuardrailsSummary,
    PolicyDetections,
    PolicyViolationDetection,
)
from enkrypt_async._models.completions import completion_decoder
from enkrypt_async._models.guardrails import convert_detections
from enkrypt_async._responses import error_in

REFERENCE = Path(__file__).parent / "data" / "completion_reference.json"


@pytest.fixture(scope="module")
def reference_bytes() -> bytes:
    return REFERENCE.read_bytes()


def decode(body: str) -> Completion:
    return completion_decoder.decode(body.encode())


def report_of(report: str) -> GuardrailsReport:
    """Decode ``report`` as a completion's input side, through the real decoder."""
    completion = decode(
        f'{{"enkrypt_policy_detections": {{"input_guardrails": {report}}}}}'
    )
    detections = completion.enkrypt_policy_detections
    assert detections is not None
    assert detections.input_guardrails is not None
    return detections.input_guardrails


def details_of(details: str) -> GuardrailsDetails:
    return report_of(f'{{"details": {details}}}').details


def summary_of(summary: str) -> GuardrailsSummary:
    return report_of(f'{{"summary": {summary}}}').summary


def assert_decoded_as_sent(decoded: object, sent: object, path: str = "$") -> None:
    """Every key sent is a declared field and decodes to the value sent."""
    if isinstance(decoded, msgspec.Struct):
        assert isinstance(sent, dict), path
        for key, value in sent.items():
            assert key in decoded.__struct_fields__, f"{path}.{key} is not a field"
            assert_decoded_as_sent(getattr(decoded, key), value, f"{path}.{key}")
    elif isinstance(sent, dict):
        assert isinstance(decoded, dict), path
        assert decoded.keys() == sent.keys(), path
        for key, value in sent.items():
            assert_decoded_as_sent(decoded[key], value, f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(decoded, list), path
        assert len(decoded) == len(sent), path
        for i, (item, sent_item) in enumerate(zip(decoded, sent, strict=True)):
            assert_decoded_as_sent(item, sent_item, f"{path}[{i}]")
    elif isinstance(sent, str) and isinstance(decoded, float):
        assert decoded == float(sent), path  # numeric strings become floats
    else:
        assert type(decoded) is type(sent), path
        assert decoded == sent, path


# --- the reference page's example ----------------------------------------------------


def test_reference_example_decodes_every_key_to_the_value_sent(
    reference_bytes: bytes,
) -> None:
    sent = json.loads(reference_bytes)  # the stdlib keeps big ints exact too
    assert_decoded_as_sent(completion_decoder.decode(reference_bytes), sent)


def test_reference_example_decodes_field_for_field(reference_bytes: bytes) -> None:
    completion = completion_decoder.decode(reference_bytes)

    assert completion.id == "9023f7795cc53994"
    assert completion.object == "text.completion"
    assert completion.created == 1736924194
    assert completion.model == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert completion.prompt == []
    assert completion.system_fingerprint is None
    [choice] = completion.choices
    assert choice.text.startswith("?\n\nA: Why don't scientists trust atoms?\n\n")
    assert choice.text.endswith("I'm just using my remorseless w")
    assert choice.finish_reason == "length"
    assert choice.seed == 14925105257546449000
    assert choice.logprobs is None
    assert choice.index == 0
    assert completion.usage == _models.Usage(
        prompt_tokens=7, completion_tokens=2048, total_tokens=2055
    )

    detections = completion.enkrypt_policy_detections
    assert detections is not None
    assert detections.flagged == {"input": ["nsfw"], "output": []}
    out = detections.output_guardrails
    assert out is not None
    assert out.details.keyword_detector == _models.KeywordDetection(
        detected_counts={},
        redacted_text=" Hello! How can I assist you today?",
        detected_keywords={},
    )
    assert out.details.keyword_detector.keywords == []
    assert out.details.policy_violation == PolicyViolationDetection(
        violating_policy="No Violation Found", explanation="No Violation Found."
    )
    assert not out.details.policy_violation.violated
    assert out.details.bias == _models.BiasDetection(
        bias_detected=False, debiased_text="Hello! How may I help you today?"
    )
    assert out.details.pii == _models.PIIDetection()
    assert out.details.nsfw == _models.NSFWDetection(
        sfw=0.77364963293076, nsfw=0.14463838934898
    )
    assert out.details.toxicity == _models.ToxicityDetection(
        threat=0.00013719938579015,
        severe_toxicity=0.00013394378765952,
        obscene=0.00018259837816004,
        insult=0.00018637960602064,
        toxicity=0.00058524927590042,
        identity_hate=0.00014582877338398,
    )
    assert out.details.injection_attack == _models.InjectionAttackDetection(
        safe=0.998087, attack=0.001913
    )
    assert out.summary == GuardrailsSummary(
        keyword_detected=0,
        policy_violation=0,
        bias=0,
        pii=0,
        nsfw=0,
        toxicity={},
        injection_attack=0,
    )
    inp = detections.input_guardrails
    assert inp is not None
    assert inp.details.keyword_detector is not None
    assert inp.details.keyword_detector.redacted_text == "|"
    assert inp.details.injection_attack == _models.InjectionAttackDetection(
        safe=0.999906, attack=0.000094
    )
    assert inp.summary.nsfw == 1
    assert inp.flagged == ["nsfw"]


def test_reference_example_reencodes_to_an_equal_completion(
    reference_bytes: bytes,
) -> None:
    completion = completion_decoder.decode(reference_bytes)
    assert completion_decoder.decode(msgspec.json.encode(completion)) == completion


# --- every detector, from realistic JSON ---------------------------------------------


def test_keyword_detector_list_of_keywords_decodes_with_counts() -> None:
    details = details_of(
        '{"keyword_detector": {"detected_keywords": ["Acme", "XYZ"],'
        ' "detected_counts": {"Acme": 2, "XYZ": "1"},'
        ' "redacted_text": "[REDACTED] and [REDACTED]", "new_field": [1]}}'
    )
    keywords = details.keyword_detector
    assert keywords is not None
    assert keywords.keywords == ["Acme", "XYZ"]
    assert keywords.detected_counts == {"Acme": 2, "XYZ": 1}
    assert keywords.redacted_text == "[REDACTED] and [REDACTED]"


@pytest.mark.parametrize(
    ("detected", "expected"),
    [
        pytest.param("{}", [], id="empty-object"),
        pytest.param("[]", [], id="empty-list"),
        pytest.param('{"Acme": 2, "XYZ": 1}', ["Acme", "XYZ"], id="map-keys"),
        pytest.param('["Acme"]', ["Acme"], id="list"),
    ],
)
def test_keyword_detector_keywords_is_always_a_list(
    detected: str, expected: list[str]
) -> None:
    details = details_of(f'{{"keyword_detector": {{"detected_keywords": {detected}}}}}')
    assert details.keyword_detector is not None
    assert details.keyword_detector.keywords == expected


@pytest.mark.parametrize(
    ("policy", "violated"),
    [
        pytest.param('"Illegal activities"', True, id="named-policy"),
        pytest.param('"No Violation Found"', False, id="no-violation"),
        pytest.param('""', False, id="empty"),
        pytest.param("null", False, id="null"),
    ],
)
def test_policy_violation_violated_only_when_a_policy_is_named(
    policy: str, violated: bool
) -> None:
    details = details_of(
        f'{{"policy_violation": {{"violating_policy": {policy}, "explanation": "x"}}}}'
    )
    assert details.policy_violation is not None
    assert details.policy_violation.violated is violated


def test_policy_violation_absent_policy_is_not_violated() -> None:
    assert not PolicyViolationDetection().violated


def test_bias_decodes_biased_text_and_lax_bool() -> None:
    details = details_of(
        '{"bias": {"bias_detected": 1, "biased_text": "men are better",'
        ' "debiased_text": "people differ", "score": 0.9}}'
    )
    assert details.bias == _models.BiasDetection(
        bias_detected=True, biased_text="men are better", debiased_text="people differ"
    )


def test_pii_keeps_known_entity_types_and_ignores_other_ones() -> None:
    details = details_of(
        '{"pii": {"pii": {"<EMAIL_ADDRESS_0>": "a@b.c"},'
        ' "secrets": {"<API_KEY_0>": "sk-123"}, "ip_address": {}, "url": {},'
        ' "person": {"<PERSON_0>": "Ada"}, "phone_number": {"<PHONE_0>": "555"},'
        ' "credit_card": ["not", "a", "map"]}}'
    )
    pii = details.pii
    assert pii is not None
    assert pii.pii == {"<EMAIL_ADDRESS_0>": "a@b.c"}
    assert pii.secrets == {"<API_KEY_0>": "sk-123"}
    assert pii.ip_address == {}
    assert pii.url == {}
    assert pii.entities == {
        "pii": {"<EMAIL_ADDRESS_0>": "a@b.c"},
        "secrets": {"<API_KEY_0>": "sk-123"},
        "person": {"<PERSON_0>": "Ada"},
    }


def test_nsfw_integers_and_strings_decode_to_floats() -> None:
    details = details_of('{"nsfw": {"sfw": 1, "nsfw": "0", "label": "safe"}}')
    assert details.nsfw == _models.NSFWDetection(sfw=1.0, nsfw=0.0)
    assert details.nsfw is not None
    assert isinstance(details.nsfw.sfw, float)
    assert isinstance(details.nsfw.nsfw, float)


def test_toxicity_details_decode_from_floats_and_numeric_strings() -> None:
    details = details_of(
        '{"toxicity": {"toxicity": "0.91", "severe_toxicity": 0.2, "obscene": 0.3,'
        ' "threat": 0, "insult": 0.85, "identity_hate": 0.01, "sexual_explicit": 0.1}}'
    )
    assert details.toxicity == _models.ToxicityDetection(
        toxicity=0.91,
        severe_toxicity=0.2,
        obscene=0.3,
        threat=0.0,
        insult=0.85,
        identity_hate=0.01,
    )


@pytest.mark.parametrize(
    "scores",
    [
        pytest.param('"safe": "0.998087", "attack": "0.001913"', id="strings-proxy"),
        pytest.param('"safe": 0.998087, "attack": 0.001913', id="floats-elsewhere"),
    ],
)
def test_injection_attack_scores_decode_to_floats(scores: str) -> None:
    details = details_of(f'{{"injection_attack": {{{scores}}}}}')
    assert details.injection_attack == _models.InjectionAttackDetection(
        safe=0.998087, attack=0.001913
    )


def test_injection_attack_newer_fields_are_kept_as_sent() -> None:
    details = details_of(
        '{"injection_attack": {"safe": "0.1", "attack": "0.9",'
        ' "most_unsafe_content": "ignore previous instructions",'
        ' "compliance_mapping": {"owasp": ["LLM01"], "nist": null}}}'
    )
    injection = details.injection_attack
    assert injection is not None
    assert injection.attack == 0.9
    assert injection.most_unsafe_content == "ignore previous instructions"
    assert injection.compliance_mapping == {"owasp": ["LLM01"], "nist": None}


def test_topic_detector_is_a_map_of_topic_to_float() -> None:
    details = details_of(
        '{"topic_detector": {"science": 0.93, "sports": "0.02", "music": 0}}'
    )
    assert details.topic_detector == {"science": 0.93, "sports": 0.02, "music": 0.0}


def test_similarity_and_sponge_detectors_decode() -> None:
    details = details_of(
        '{"system_prompt": {"similarity_score": "0.87", "index": "system"},'
        ' "copyright_ip": {"similarity_score": 0.12},'
        ' "sponge_attack": {"sponge_attack_detected": true}}'
    )
    assert details.system_prompt == _models.SystemPromptDetection(similarity_score=0.87)
    assert details.copyright_ip == _models.CopyrightIPDetection(similarity_score=0.12)
    assert details.sponge_attack == _models.SpongeAttackDetection(
        sponge_attack_detected=True
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            '{"hallucination": {"score": 0.7}}',
            GuardrailsDetails(hallucination=_models.HallucinationDetection(score=0.7)),
            id="hallucination-score",
        ),
        pytest.param(
            '{"hallucination": {"hallucination_score": "0.7", "is_hallucination": 1}}',
            GuardrailsDetails(
                hallucination=_models.HallucinationDetection(
                    hallucination_score=0.7, is_hallucination=1.0
                )
            ),
            id="hallucination-named-score-and-verdict",
        ),
        pytest.param(
            '{"hallucination": {"is_hallucination": true}}',
            GuardrailsDetails(
                hallucination=_models.HallucinationDetection(is_hallucination=True)
            ),
            id="hallucination-bool-verdict",
        ),
        pytest.param(
            '{"adherence": {"adherence_score": 0.95, "atomic_facts": []}}',
            GuardrailsDetails(
                adherence=_models.AdherenceDetection(adherence_score=0.95)
            ),
            id="adherence-named-score",
        ),
        pytest.param(
            '{"adherence": {"score": "0.5"}}',
            GuardrailsDetails(adherence=_models.AdherenceDetection(score=0.5)),
            id="adherence-score",
        ),
        pytest.param(
            '{"relevancy": {"relevancy_score": 0.4}, "relevance": {"x": 1}}',
            GuardrailsDetails(
                relevancy=_models.RelevancyDetection(relevancy_score=0.4)
            ),
            id="relevancy-named-score",
        ),
        pytest.param(
            '{"relevancy": {"score": 1}}',
            GuardrailsDetails(relevancy=_models.RelevancyDetection(score=1.0)),
            id="relevancy-score",
        ),
    ],
)
def test_context_detectors_accept_each_score_name(
    body: str, expected: GuardrailsDetails
) -> None:
    assert details_of(body) == expected


def test_unknown_detector_is_ignored() -> None:
    details = details_of('{"future_detector": {"x": 1}, "nsfw": {"nsfw": 0.5}}')
    assert details == GuardrailsDetails(nsfw=_models.NSFWDetection(nsfw=0.5))


def test_report_without_details_or_summary_is_empty() -> None:
    report = report_of("{}")
    assert report == GuardrailsReport()
    assert report.details == GuardrailsDetails()
    assert report.summary == GuardrailsSummary()
    assert report.flagged == []


# --- summary and flagged -------------------------------------------------------------


@pytest.mark.parametrize(
    ("toxicity", "expected"),
    [
        pytest.param('["insult", "threat"]', ["insult", "threat"], id="list"),
        pytest.param("[]", [], id="empty-list"),
        pytest.param("{}", {}, id="empty-object"),
        pytest.param("null", None, id="null"),
    ],
)
def test_summary_toxicity_accepts_a_list_or_an_object(
    toxicity: str, expected: object
) -> None:
    assert summary_of(f'{{"toxicity": {toxicity}}}').toxicity == expected


@pytest.mark.parametrize(
    ("summary", "flagged"),
    [
        pytest.param("{}", [], id="empty"),
        pytest.param(
            '{"keyword_detected": 0, "policy_violation": 0, "bias": 0, "pii": 0,'
            ' "nsfw": 0, "toxicity": {}, "injection_attack": 0, "sponge_attack": 0,'
            ' "copyright_ip_similarity": 0, "system_prompt_similarity": 0,'
            ' "on_topic": 1}',
            [],
            id="all-clear",
        ),
        pytest.param('{"keyword_detected": 1}', ["keyword_detector"], id="keyword"),
        pytest.param('{"policy_violation": 1}', ["policy_violation"], id="policy"),
        pytest.param('{"bias": 1}', ["bias"], id="bias"),
        pytest.param('{"pii": 1}', ["pii"], id="pii"),
        pytest.param('{"nsfw": 1}', ["nsfw"], id="nsfw"),
        pytest.param('{"toxicity": ["insult"]}', ["toxicity"], id="toxicity-list"),
        pytest.param('{"toxicity": []}', [], id="toxicity-empty-list"),
        pytest.param('{"toxicity": {}}', [], id="toxicity-empty-object"),
        pytest.param('{"injection_attack": 1}', ["injection_attack"], id="injection"),
        pytest.param('{"sponge_attack": 1}', ["sponge_attack"], id="sponge"),
        pytest.param(
            '{"copyright_ip_similarity": 1}', ["copyright_ip"], id="copyright"
        ),
        pytest.param(
            '{"system_prompt_similarity": 1}', ["system_prompt"], id="system-prompt"
        ),
        pytest.param('{"on_topic": 0}', ["topic_detector"], id="off-topic-inverted"),
        pytest.param('{"on_topic": 1}', [], id="on-topic"),
        pytest.param('{"on_topic": null}', [], id="on-topic-null"),
        pytest.param('{"nsfw": 2}', ["nsfw"], id="count-above-one"),
        pytest.param('{"nsfw": "1"}', ["nsfw"], id="numeric-string-flag"),
        pytest.param(
            '{"on_topic": 0, "injection_attack": 1, "toxicity": ["threat"],'
            ' "keyword_detected": 1, "system_prompt_similarity": 1, "pii": 0}',
            [
                "keyword_detector",
                "toxicity",
                "injection_attack",
                "system_prompt",
                "topic_detector",
            ],
            id="several-in-field-order",
        ),
    ],
)
def test_summary_flagged_names_the_detectors_that_fired(
    summary: str, flagged: list[str]
) -> None:
    decoded = summary_of(summary)
    assert decoded.flagged == flagged
    assert GuardrailsReport(summary=decoded).flagged == flagged


def test_summary_flagged_names_are_details_fields() -> None:
    every_flag = GuardrailsSummary(
        keyword_detected=1,
        policy_violation=1,
        bias=1,
        pii=1,
        nsfw=1,
        toxicity=["insult"],
        injection_attack=1,
        sponge_attack=1,
        copyright_ip_similarity=1,
        system_prompt_similarity=1,
        on_topic=0,
    )
    assert len(every_flag.flagged) == len(GuardrailsSummary.__struct_fields__)
    assert set(every_flag.flagged) <= set(GuardrailsDetails.__struct_fields__)


_FIRED = '{"summary": {"nsfw": 1}}'
_CLEAR = '{"summary": {"nsfw": 0}}'


@pytest.mark.parametrize(
    ("detections", "flagged"),
    [
        pytest.param("{}", {"input": [], "output": []}, id="no-sides"),
        pytest.param(
            f'{{"input_guardrails": {_FIRED}}}',
            {"input": ["nsfw"], "output": []},
            id="input-only",
        ),
        pytest.param(
            f'{{"output_guardrails": {_FIRED}}}',
            {"input": [], "output": ["nsfw"]},
            id="output-only",
        ),
        pytest.param(
            f'{{"input_guardrails": {_CLEAR}, "output_guardrails": {_FIRED}}}',
            {"input": [], "output": ["nsfw"]},
            id="both-sides",
        ),
        pytest.param(
            '{"input_guardrails": null, "output_guardrails": null}',
            {"input": [], "output": []},
            id="null-sides",
        ),
    ],
)
def test_policy_detections_flagged_per_side(
    detections: str, flagged: dict[str, list[str]]
) -> None:
    completion = decode(f'{{"enkrypt_policy_detections": {detections}}}')
    assert completion.enkrypt_policy_detections is not None
    assert completion.enkrypt_policy_detections.flagged == flagged


# --- the completion and its chunks ---------------------------------------------------


def test_empty_object_decodes_to_all_defaults() -> None:
    completion = decode("{}")
    assert completion == Completion()
    assert completion.choices == []
    assert completion.usage is None
    assert completion.enkrypt_policy_detections is None


def test_streamed_chunk_decodes_with_null_finish_reason_and_no_usage() -> None:
    completion = decode(
        '{"id": "cmpl-1", "object": "text_completion", "created": 1,'
        ' "model": "m", "system_fingerprint": "fp_1",'
        ' "choices": [{"text": "Hel", "index": 1, "finish_reason": null,'
        ' "logprobs": null}]}'
    )
    assert completion.system_fingerprint == "fp_1"
    assert completion.choices == [_models.CompletionChoice(text="Hel", index=1)]
    assert completion.usage is None


def test_usage_chunk_with_no_choices_and_null_usage_decode() -> None:
    usage_chunk = decode(
        '{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2,'
        ' "total_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 0}}}'
    )
    assert usage_chunk.usage == _models.Usage(
        prompt_tokens=1,
        completion_tokens=2,
        total_tokens=3,
        completion_tokens_details=_models.CompletionTokensDetails(reasoning_tokens=0),
    )
    assert decode('{"usage": null}').usage is None


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param("[]", [], id="empty-list-together"),
        pytest.param('"hi"', "hi", id="string"),
        pytest.param('["a", "b"]', ["a", "b"], id="list-of-strings"),
        pytest.param(
            '[{"text": "hi", "logprobs": null}]',
            [{"text": "hi", "logprobs": None}],
            id="list-of-objects",
        ),
        pytest.param("null", None, id="null"),
    ],
)
def test_prompt_is_kept_as_sent(prompt: str, expected: object) -> None:
    assert decode(f'{{"prompt": {prompt}}}').prompt == expected


@pytest.mark.parametrize(
    "reason", ["eos", "length", "stop", "content_filter", "tool_calls", "guardrails"]
)
def test_finish_reason_is_an_open_string(reason: str) -> None:
    completion = decode(f'{{"choices": [{{"finish_reason": "{reason}"}}]}}')
    assert completion.choices[0].finish_reason == reason


def test_logprobs_decode_with_null_first_token() -> None:
    completion = decode(
        '{"choices": [{"text": "Hi there", "logprobs": {"tokens": ["Hi", " there"],'
        ' "token_logprobs": [null, "-0.5"], "top_logprobs": [null, {" there": -0.5}],'
        ' "text_offset": [0, 2], "extra": 1}}]}'
    )
    assert completion.choices[0].logprobs == _models.Logprobs(
        tokens=["Hi", " there"],
        token_logprobs=[None, -0.5],
        top_logprobs=[None, {" there": -0.5}],
        text_offset=[0, 2],
    )


def test_unknown_keys_are_ignored_at_every_level() -> None:
    completion = decode(
        '{"x": 1, "choices": [{"text": "t", "x": {"y": []}}],'
        ' "usage": {"total_tokens": 3, "x": null},'
        ' "enkrypt_policy_detections": {"x": 1, "input_guardrails": {"x": "y",'
        ' "details": {"x": {}, "nsfw": {"nsfw": 0.1, "x": 2}},'
        ' "summary": {"x": 9, "nsfw": 0}}}}'
    )
    assert completion == Completion(
        choices=[_models.CompletionChoice(text="t")],
        usage=_models.Usage(total_tokens=3),
        enkrypt_policy_detections=PolicyDetections(
            input_guardrails=GuardrailsReport(
                details=GuardrailsDetails(nsfw=_models.NSFWDetection(nsfw=0.1)),
                summary=GuardrailsSummary(nsfw=0),
            )
        ),
    )


# --- seed: exact integers ------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(14925105257546449000, id="reference-above-int64"),
        pytest.param(2**63, id="2**63"),
        pytest.param(2**64 - 1, id="uint64-max"),
        pytest.param(2**64, id="2**64"),
        pytest.param(2**64 + 10**18 + 1, id="msgspec-701-range-start"),
        pytest.param(19933688932870350000, id="msgspec-701-reproducer"),
        pytest.param(2 * 10**19 - 1, id="msgspec-701-range-end"),
        pytest.param(2**128 + 1, id="2**128+1"),
        pytest.param(-(2**70), id="negative-big"),
        pytest.param(10**4299, id="4300-digits"),
    ],
)
def test_seed_keeps_its_exact_integer_value(seed: int) -> None:
    completion = decode(f'{{"choices": [{{"seed": {seed}}}]}}')
    assert completion.choices[0].seed == seed


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_any_seed_roundtrips_exactly(seed: int) -> None:
    completion = decode(f'{{"choices": [{{"seed": {seed}}}]}}')
    assert completion.choices[0].seed == seed
    assert completion_decoder.decode(msgspec.json.encode(completion)) == completion


def test_seed_sent_as_a_string_decodes_to_the_exact_int() -> None:
    completion = decode('{"choices": [{"seed": "14925105257546449000"}]}')
    assert completion.choices[0].seed == 14925105257546449000


def test_seed_as_an_integral_float_within_2_53_decodes_to_int() -> None:
    completion = decode('{"choices": [{"seed": 42.0}]}')
    assert completion.choices[0].seed == 42
    assert type(completion.choices[0].seed) is int


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param("1.4925105257546449e19", id="float-above-2**53-would-round"),
        pytest.param("42.5", id="fractional"),
        pytest.param("1" * 4301, id="over-cpython-digit-limit"),
    ],
)
def test_seed_that_cannot_be_exact_raises_validation_error(seed: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(f'{{"choices": [{{"seed": {seed}}}]}}')


# --- lax mode: what strict=False loosens, and what it does not -----------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            '{"usage": {"total_tokens": "7"}}',
            Completion(usage=_models.Usage(total_tokens=7)),
            id="str-to-int",
        ),
        pytest.param(
            '{"usage": {"total_tokens": "1e3"}}',
            Completion(usage=_models.Usage(total_tokens=1000)),
            id="exponent-str-to-int",
        ),
        pytest.param(
            '{"usage": {"total_tokens": 7.0}}',
            Completion(usage=_models.Usage(total_tokens=7)),
            id="integral-float-to-int",
        ),
        pytest.param(
            '{"usage": {"total_tokens": "null"}}',
            Completion(usage=_models.Usage()),
            id="null-string-to-none",
        ),
        pytest.param(
            '{"model": "null"}', Completion(model="null"), id="null-string-stays-str"
        ),
        pytest.param(
            '{"choices": [{"text": "7", "index": "2"}]}',
            Completion(choices=[_models.CompletionChoice(text="7", index=2)]),
            id="numeric-string-stays-str",
        ),
    ],
)
def test_lax_mode_coerces_strings_and_integral_floats(
    body: str, expected: Completion
) -> None:
    assert decode(body) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"0.998087"', 0.998087, id="numeric-string"),
        pytest.param('"1e-3"', 0.001, id="exponent-string"),
        pytest.param("3", 3.0, id="int"),
        pytest.param('"inf"', math.inf, id="inf-string"),
        pytest.param('"-Infinity"', -math.inf, id="minus-infinity-string"),
    ],
)
def test_lax_mode_floats(value: str, expected: float) -> None:
    details = details_of(f'{{"nsfw": {{"nsfw": {value}}}}}')
    assert details.nsfw is not None
    assert details.nsfw.nsfw == expected


def test_lax_mode_nan_string_becomes_nan() -> None:
    details = details_of('{"nsfw": {"nsfw": "NaN"}}')
    assert details.nsfw is not None
    assert details.nsfw.nsfw is not None
    assert math.isnan(details.nsfw.nsfw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"true"', True, id="true-string"),
        pytest.param('"FALSE"', False, id="false-string-any-case"),
        pytest.param('"1"', True, id="one-string"),
        pytest.param("0", False, id="zero"),
        pytest.param('"null"', None, id="null-string"),
    ],
)
def test_lax_mode_bools(value: str, expected: bool | None) -> None:
    details = details_of(f'{{"sponge_attack": {{"sponge_attack_detected": {value}}}}}')
    assert details.sponge_attack is not None
    assert details.sponge_attack.sponge_attack_detected is expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"model": 5}', id="number-to-str"),
        pytest.param('{"choices": [{"text": true}]}', id="bool-to-str"),
        pytest.param('{"usage": {"total_tokens": true}}', id="bool-to-int"),
        pytest.param('{"usage": {"total_tokens": 7.5}}', id="fractional-to-int"),
        pytest.param('{"usage": {"total_tokens": "seven"}}', id="word-to-int"),
        pytest.param('{"usage": {"total_tokens": " 7"}}', id="padded-to-int"),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails": {"details":'
            ' {"nsfw": {"nsfw": "high"}}}}}',
            id="word-to-float",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails": {"details":'
            ' {"sponge_attack": {"sponge_attack_detected": 2}}}}}',
            id="two-to-bool",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails": {"details":'
            ' {"nsfw": {"nsfw": 1e400}}}}}',
            id="float-out-of-range",
        ),
    ],
)
def test_lax_mode_still_rejects(body: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(body)


# --- wrong shapes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[]", id="top-level-array"),
        pytest.param('"text"', id="top-level-string"),
        pytest.param("null", id="top-level-null"),
        pytest.param('{"choices": {}}', id="choices-object"),
        pytest.param('{"choices": [1]}', id="choice-number"),
        pytest.param('{"choices": [{"logprobs": []}]}', id="logprobs-array"),
        pytest.param('{"usage": "none"}', id="usage-string"),
        pytest.param('{"prompt": {}}', id="prompt-object"),
        pytest.param('{"enkrypt_policy_detections": []}', id="detections-array"),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails": "blocked"}}',
            id="report-string",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails":'
            ' {"summary": {"toxicity": "insult"}}}}',
            id="summary-toxicity-string",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails":'
            ' {"details": {"pii": {"pii": {"<X_0>": 1}}}}}}',
            id="pii-value-number",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails":'
            ' {"details": {"topic_detector": ["science"]}}}}',
            id="topic-list",
        ),
        pytest.param(
            '{"enkrypt_policy_detections": {"input_guardrails":'
            ' {"details": {"keyword_detector": {"detected_counts": {"a": "x"}}}}}}',
            id="keyword-count-word",
        ),
    ],
)
def test_wrong_shape_raises_validation_error(body: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(body)


def test_malformed_json_raises_decode_error_not_validation_error() -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        completion_decoder.decode(b'{"id": ')
    assert not isinstance(caught.value, msgspec.ValidationError)


# --- convert_detections (error bodies) -----------------------------------------------


def test_convert_detections_from_a_decoded_error_body() -> None:
    body = json.loads(
        '{"error": {"code": "guardrails_blocked", "message": "blocked"},'
        ' "enkrypt_policy_detections": {"input_guardrails": {"details":'
        ' {"injection_attack": {"safe": "0.01", "attack": "0.99"}, "x": {}},'
        ' "summary": {"injection_attack": 1, "toxicity": {}}}, "x": 1}}'
    )
    detections = convert_detections(body["enkrypt_policy_detections"])
    assert detections.flagged == {"input": ["injection_attack"], "output": []}
    assert detections.input_guardrails is not None
    assert detections.input_guardrails.details.injection_attack == (
        _models.InjectionAttackDetection(safe=0.01, attack=0.99)
    )


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="list"),
        pytest.param("blocked", id="string"),
        pytest.param({"input_guardrails": 5}, id="side-number"),
        pytest.param(
            {"output_guardrails": {"summary": {"nsfw": "high"}}}, id="flag-word"
        ),
    ],
)
def test_convert_detections_wrong_shape_raises_validation_error(obj: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        convert_detections(obj)


# --- error events in a stream --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            '{"error": {"message": "overloaded", "type": "server_error",'
            ' "code": 503, "param": null, "x": 1}}',
            {
                "message": "overloaded",
                "type": "server_error",
                "code": 503,
                "param": None,
                "x": 1,
            },
            id="object",
        ),
        pytest.param('{"error": {"code": 1.5}}', {"code": 1.5}, id="fractional-code"),
        pytest.param('{"error": "upstream timed out"}', "upstream timed out", id="str"),
        pytest.param('{"error": true}', True, id="bool"),
        pytest.param('{"error": 5}', 5, id="number"),
        pytest.param('{"error": ["a"]}', ["a"], id="list"),
        pytest.param('{"\\u0065rror": "escaped"}', "escaped", id="escaped-key"),
        pytest.param('{"erro\\u0072": "escaped"}', "escaped", id="escaped-last"),
        pytest.param('{"error": null}', None, id="null"),
        pytest.param('{"id": "x"}', None, id="missing"),
        pytest.param('{"id": "said \\"error\\""}', None, id="inside-a-string"),
        pytest.param('{"x": {"error": 1}}', None, id="nested"),
        pytest.param('["error"]', None, id="not-an-object"),
    ],
)
def test_any_non_null_top_level_error_is_found_whatever_its_shape(
    body: str, error: object
) -> None:
    assert error_in(body.encode()) == error


# --- Struct configuration ------------------------------------------------------------


def test_structs_are_frozen() -> None:
    usage = _models.Usage(total_tokens=1)
    with pytest.raises(AttributeError):
        usage.total_tokens = 2  # type: ignore[misc]


def test_structs_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        _models.Usage(1)  # type: ignore[call-arg]


def test_encoding_omits_defaults_but_keeps_every_choice_field() -> None:
    assert msgspec.json.encode(Completion()) == b"{}"
    chunk = Completion(choices=[_models.CompletionChoice(text="a")])
    assert msgspec.json.encode(chunk) == (
        b'{"choices":[{"text":"a","index":0,"finish_reason":null,'
        b'"logprobs":null,"seed":null}]}'
    )


def test_mutable_defaults_are_not_shared() -> None:
    assert Completion().choices is not Completion().choices
    assert GuardrailsReport().details is not GuardrailsReport().details


def test_completion_decoder_is_lax_and_typed() -> None:
    assert completion_decoder.type is Completion
    assert completion_decoder.strict is False


def test_all_is_sorted_and_names_existing_public_models() -> None:
    assert _models.__all__ == sorted(_models.__all__)
    for name in _models.__all__:
        model = getattr(_models, name)
        assert name == "TopicDetection" or issubclass(model, msgspec.Struct), name
