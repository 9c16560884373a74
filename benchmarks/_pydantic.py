"""A pydantic v2 model mirroring ``enkrypt_async.Completion``, for the decode figures.

Lax mode (pydantic's default) reads the proxy's numeric strings as floats, like
the msgspec models with ``strict=False``; unknown keys are ignored.
"""

from __future__ import annotations

import builtins

from pydantic import BaseModel, Field


class KeywordDetection(BaseModel):
    detected_keywords: list[str] | dict[str, object] = []
    detected_counts: dict[str, int] = {}
    redacted_text: str | None = None


class PolicyViolationDetection(BaseModel):
    violating_policy: str | None = None
    explanation: str | None = None


class BiasDetection(BaseModel):
    bias_detected: bool | None = None
    debiased_text: str | None = None
    biased_text: str | None = None


class PIIDetection(BaseModel):
    pii: dict[str, str] = {}
    secrets: dict[str, str] = {}
    ip_address: dict[str, str] = {}
    url: dict[str, str] = {}
    person: dict[str, str] = {}


class NSFWDetection(BaseModel):
    sfw: float | None = None
    nsfw: float | None = None


class ToxicityDetection(BaseModel):
    toxicity: float | None = None
    severe_toxicity: float | None = None
    obscene: float | None = None
    threat: float | None = None
    insult: float | None = None
    identity_hate: float | None = None


class InjectionAttackDetection(BaseModel):
    safe: float | None = None
    attack: float | None = None
    most_unsafe_content: object = None
    compliance_mapping: object = None


class SimilarityDetection(BaseModel):
    similarity_score: float | None = None


class SpongeAttackDetection(BaseModel):
    sponge_attack_detected: bool | None = None


class HallucinationDetection(BaseModel):
    score: float | None = None
    hallucination_score: float | None = None
    is_hallucination: bool | float | None = None


class AdherenceDetection(BaseModel):
    score: float | None = None
    adherence_score: float | None = None


class RelevancyDetection(BaseModel):
    score: float | None = None
    relevancy_score: float | None = None


class GuardrailsDetails(BaseModel):
    keyword_detector: KeywordDetection | None = None
    policy_violation: PolicyViolationDetection | None = None
    bias: BiasDetection | None = None
    pii: PIIDetection | None = None
    nsfw: NSFWDetection | None = None
    toxicity: ToxicityDetection | None = None
    injection_attack: InjectionAttackDetection | None = None
    topic_detector: dict[str, float] | None = None
    system_prompt: SimilarityDetection | None = None
    copyright_ip: SimilarityDetection | None = None
    sponge_attack: SpongeAttackDetection | None = None
    hallucination: HallucinationDetection | None = None
    adherence: AdherenceDetection | None = None
    relevancy: RelevancyDetection | None = None


class GuardrailsSummary(BaseModel):
    keyword_detected: int | None = None
    policy_violation: int | None = None
    bias: int | None = None
    pii: int | None = None
    nsfw: int | None = None
    toxicity: list[str] | dict[str, object] | None = None
    injection_attack: int | None = None
    sponge_attack: int | None = None
    copyright_ip_similarity: int | None = None
    system_prompt_similarity: int | None = None
    on_topic: int | None = None


class GuardrailsReport(BaseModel):
    details: GuardrailsDetails = Field(default_factory=GuardrailsDetails)
    summary: GuardrailsSummary = Field(default_factory=GuardrailsSummary)


class PolicyDetections(BaseModel):
    input_guardrails: GuardrailsReport | None = None
    output_guardrails: GuardrailsReport | None = None


class Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class Logprobs(BaseModel):
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(BaseModel):
    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    logprobs: Logprobs | None = None
    seed: int | None = None


class Completion(BaseModel):
    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    prompt: str | list[builtins.object] | None = None
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None
