"""The floor's own msgspec Structs: what a user of bare aiohttp + msgspec would write.

Same fields and types as ``enkrypt_async``'s models (so the decoders do the same
work), but nothing imported from the library.
"""

from __future__ import annotations

import builtins

import msgspec


class KeywordDetection(msgspec.Struct):
    detected_keywords: list[str] | dict[str, object] = []
    detected_counts: dict[str, int] = {}
    redacted_text: str | None = None


class PolicyViolationDetection(msgspec.Struct):
    violating_policy: str | None = None
    explanation: str | None = None


class BiasDetection(msgspec.Struct):
    bias_detected: bool | None = None
    debiased_text: str | None = None
    biased_text: str | None = None


class PIIDetection(msgspec.Struct):
    pii: dict[str, str] = {}
    secrets: dict[str, str] = {}
    ip_address: dict[str, str] = {}
    url: dict[str, str] = {}
    person: dict[str, str] = {}


class NSFWDetection(msgspec.Struct):
    sfw: float | None = None
    nsfw: float | None = None


class ToxicityDetection(msgspec.Struct):
    toxicity: float | None = None
    severe_toxicity: float | None = None
    obscene: float | None = None
    threat: float | None = None
    insult: float | None = None
    identity_hate: float | None = None


class InjectionAttackDetection(msgspec.Struct):
    safe: float | None = None
    attack: float | None = None
    most_unsafe_content: object = None
    compliance_mapping: object = None


class SimilarityDetection(msgspec.Struct):
    similarity_score: float | None = None


class SpongeAttackDetection(msgspec.Struct):
    sponge_attack_detected: bool | None = None


class HallucinationDetection(msgspec.Struct):
    score: float | None = None
    hallucination_score: float | None = None
    is_hallucination: bool | float | None = None


class AdherenceDetection(msgspec.Struct):
    score: float | None = None
    adherence_score: float | None = None


class RelevancyDetection(msgspec.Struct):
    score: float | None = None
    relevancy_score: float | None = None


class GuardrailsDetails(msgspec.Struct):
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


class GuardrailsSummary(msgspec.Struct):
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


class GuardrailsReport(msgspec.Struct):
    details: GuardrailsDetails = msgspec.field(default_factory=GuardrailsDetails)
    summary: GuardrailsSummary = msgspec.field(default_factory=GuardrailsSummary)


class PolicyDetections(msgspec.Struct):
    input_guardrails: GuardrailsReport | None = None
    output_guardrails: GuardrailsReport | None = None


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class Logprobs(msgspec.Struct):
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(msgspec.Struct):
    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    logprobs: Logprobs | None = None
    seed: int | None = None


class Completion(msgspec.Struct):
    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    # `builtins.` because the field `object` shadows the builtin in this class.
    prompt: str | list[builtins.object] | None = None
    choices: list[CompletionChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


decoder: msgspec.json.Decoder[Completion] = msgspec.json.Decoder(
    Completion, strict=False
)


# Chat: `enkrypt_async.ChatCompletionChunk` and the Structs it holds.


class TopLogprob(msgspec.Struct):
    token: str = ""
    logprob: float | None = None
    bytes: list[int] | None = None


class TokenLogprob(msgspec.Struct):
    token: str = ""
    logprob: float | None = None
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChatLogprobs(msgspec.Struct):
    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ChoiceDeltaToolCallFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChatCompletionChunkChoice(msgspec.Struct):
    index: int = 0
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str | None = None
    object: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[ChatCompletionChunkChoice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    enkrypt_policy_detections: PolicyDetections | None = None


chat_chunk_decoder: msgspec.json.Decoder[ChatCompletionChunk] = msgspec.json.Decoder(
    ChatCompletionChunk, strict=False
)
