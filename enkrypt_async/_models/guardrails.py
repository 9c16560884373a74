"""What Enkrypt's guardrails report: ``enkrypt_policy_detections`` and its parts.

The same report rides on a whole answer, on the chunk of a stream that carries it,
and on the body of an error status that blocked a request.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import msgspec

from ._base import Model

__all__ = [
    "AdherenceDetection",
    "BiasDetection",
    "CopyrightIPDetection",
    "GuardrailsDetails",
    "GuardrailsReport",
    "GuardrailsSummary",
    "HallucinationDetection",
    "InjectionAttackDetection",
    "KeywordDetection",
    "NSFWDetection",
    "PIIDetection",
    "PolicyDetections",
    "PolicyViolationDetection",
    "RelevancyDetection",
    "SpongeAttackDetection",
    "SystemPromptDetection",
    "TopicDetection",
    "ToxicityDetection",
    "convert_detections",
]


class KeywordDetection(Model, kw_only=True, frozen=True):
    """``keyword_detector``: banned keywords found.

    Attributes:
        detected_keywords: The keywords found; the proxy sends ``{}`` when none.
        detected_counts: Keyword to number of occurrences.
        redacted_text: The text with the keywords redacted.
    """

    detected_keywords: list[str] | dict[str, object] = []
    detected_counts: dict[str, int] = {}
    redacted_text: str | None = None

    @property
    def keywords(self) -> list[str]:
        """The keywords found as a list (the keys, when the proxy sent a map)."""
        return list(self.detected_keywords)


class PolicyViolationDetection(Model, kw_only=True, frozen=True):
    """``policy_violation``: whether the text breaks the deployment's policy.

    Attributes:
        violating_policy: The policy broken, or ``"No Violation Found"``.
        explanation: Why.
    """

    violating_policy: str | None = None
    explanation: str | None = None

    @property
    def violated(self) -> bool:
        """Whether a policy was named, other than ``"No Violation Found"``."""
        return self.violating_policy not in (None, "", "No Violation Found")


class BiasDetection(Model, kw_only=True, frozen=True):
    """``bias``: biased wording.

    Attributes:
        bias_detected: Whether bias was found.
        debiased_text: A rephrasing without the bias.
        biased_text: The biased part, when sent.
    """

    bias_detected: bool | None = None
    debiased_text: str | None = None
    biased_text: str | None = None


class PIIDetection(Model, kw_only=True, frozen=True):
    """``pii``: personal data and secrets, each a map of placeholder to found text.

    For example ``pii={"<EMAIL_ADDRESS_0>": "a@b.c"}``. Entity types other than the
    ones declared here are ignored when decoding (they never make it fail).

    Attributes:
        pii: Personal data (names, e-mail addresses, phone numbers...).
        secrets: API keys, passwords and other secrets.
        ip_address: IP addresses.
        url: URLs.
        person: People's names (Enkrypt's SDK declares them apart from ``pii``).
    """

    pii: dict[str, str] = {}
    secrets: dict[str, str] = {}
    ip_address: dict[str, str] = {}
    url: dict[str, str] = {}
    person: dict[str, str] = {}

    @property
    def entities(self) -> dict[str, dict[str, str]]:
        """The non-empty maps, keyed by entity type (``{"url": {...}}``)."""
        return {k: v for k in self.__struct_fields__ if (v := getattr(self, k))}


class NSFWDetection(Model, kw_only=True, frozen=True):
    """``nsfw``: probabilities that the text is safe or not safe for work.

    Attributes:
        sfw: Probability of safe for work.
        nsfw: Probability of not safe for work.
    """

    sfw: float | None = None
    nsfw: float | None = None


class ToxicityDetection(Model, kw_only=True, frozen=True):
    """``toxicity``: a probability (0..1) per category, each field named after one.

    Attributes:
        toxicity: Overall toxicity.
        severe_toxicity: Severe toxicity.
        obscene: Obscenity.
        threat: Threats.
        insult: Insults.
        identity_hate: Hate against an identity group.
    """

    toxicity: float | None = None
    severe_toxicity: float | None = None
    obscene: float | None = None
    threat: float | None = None
    insult: float | None = None
    identity_hate: float | None = None


class InjectionAttackDetection(Model, kw_only=True, frozen=True):
    """``injection_attack``: prompt injection probabilities.

    The proxy sends the probabilities as strings (``"0.998087"``); they decode into
    floats.

    Attributes:
        safe: Probability that the text is safe.
        attack: Probability that the text is an injection attack.
        most_unsafe_content: The most unsafe part, as sent (newer versions).
        compliance_mapping: Compliance frameworks touched, as sent (newer versions).
    """

    safe: float | None = None
    attack: float | None = None
    most_unsafe_content: object = None
    compliance_mapping: object = None


TopicDetection: TypeAlias = dict[str, float]
"""``topic_detector``: a free-form map of topic to score (``{"science": 0.93}``).

The wire value is the map itself, so `GuardrailsDetails.topic_detector` is a plain
``dict`` rather than a Struct wrapping one: ``details.topic_detector["science"]``.
"""


class SystemPromptDetection(Model, kw_only=True, frozen=True):
    """``system_prompt``: similarity of the text to the system prompt (leakage).

    Attributes:
        similarity_score: The similarity, 0..1.
    """

    similarity_score: float | None = None


class CopyrightIPDetection(Model, kw_only=True, frozen=True):
    """``copyright_ip``: similarity of the text to protected material.

    Attributes:
        similarity_score: The similarity, 0..1.
    """

    similarity_score: float | None = None


class SpongeAttackDetection(Model, kw_only=True, frozen=True):
    """``sponge_attack``: input crafted to waste compute.

    Attributes:
        sponge_attack_detected: Whether a sponge attack was found.
    """

    sponge_attack_detected: bool | None = None


class HallucinationDetection(Model, kw_only=True, frozen=True):
    """``hallucination``: whether the output is unsupported; field names vary.

    Attributes:
        score: The score, where sent under this name.
        hallucination_score: The score, where sent under this name.
        is_hallucination: The verdict: a bool, or a 0..1 number.
    """

    score: float | None = None
    hallucination_score: float | None = None
    is_hallucination: bool | float | None = None


class AdherenceDetection(Model, kw_only=True, frozen=True):
    """``adherence``: how closely the output sticks to the given context.

    Attributes:
        score: The score, where sent under this name.
        adherence_score: The score, where sent under this name.
    """

    score: float | None = None
    adherence_score: float | None = None


class RelevancyDetection(Model, kw_only=True, frozen=True):
    """``relevancy``: how relevant the output is to the prompt.

    Attributes:
        score: The score, where sent under this name.
        relevancy_score: The score, where sent under this name.
    """

    score: float | None = None
    relevancy_score: float | None = None


class GuardrailsDetails(Model, kw_only=True, frozen=True):
    """Per-detector details; only the detectors enabled for the deployment appear.

    Attributes:
        keyword_detector: Keywords found, with a redacted text.
        policy_violation: The deployment's policy check.
        bias: Bias check, with a debiased text.
        pii: Personal data and secrets found, by placeholder.
        nsfw: Not-safe-for-work probabilities.
        toxicity: Toxicity probabilities per category.
        injection_attack: Prompt-injection probabilities.
        topic_detector: Topic to score (a `TopicDetection` map).
        system_prompt: Similarity to the system prompt.
        copyright_ip: Similarity to protected material.
        sponge_attack: Resource-exhaustion (sponge) attack check.
        hallucination: Hallucination check of the answer.
        adherence: Adherence of the answer to the context.
        relevancy: Relevancy of the answer to the prompt.
    """

    keyword_detector: KeywordDetection | None = None
    policy_violation: PolicyViolationDetection | None = None
    bias: BiasDetection | None = None
    pii: PIIDetection | None = None
    nsfw: NSFWDetection | None = None
    toxicity: ToxicityDetection | None = None
    injection_attack: InjectionAttackDetection | None = None
    topic_detector: TopicDetection | None = None
    system_prompt: SystemPromptDetection | None = None
    copyright_ip: CopyrightIPDetection | None = None
    sponge_attack: SpongeAttackDetection | None = None
    hallucination: HallucinationDetection | None = None
    adherence: AdherenceDetection | None = None
    relevancy: RelevancyDetection | None = None


# Summary flags whose name differs from their detector's key in `details`.
_DETECTOR_OF_FLAG: Final = {
    "keyword_detected": "keyword_detector",
    "copyright_ip_similarity": "copyright_ip",
    "system_prompt_similarity": "system_prompt",
    "on_topic": "topic_detector",
}


def _fired(flag: str, value: int | list[str] | dict[str, object] | None) -> bool:
    if value is None or isinstance(value, list | dict):
        return bool(value)
    return value == 0 if flag == "on_topic" else value > 0


class GuardrailsSummary(Model, kw_only=True, frozen=True):
    """Per-detector flags: 1 when the detector fired, 0 when not, absent when off.

    Attributes:
        keyword_detected: Flag of ``keyword_detector``.
        policy_violation: Flag of ``policy_violation``.
        bias: Flag of ``bias``.
        pii: Flag of ``pii``.
        nsfw: Flag of ``nsfw``.
        toxicity: The toxicity categories triggered (a list); ``{}`` when none.
        injection_attack: Flag of ``injection_attack``.
        sponge_attack: Flag of ``sponge_attack``.
        copyright_ip_similarity: Flag of ``copyright_ip``.
        system_prompt_similarity: Flag of ``system_prompt``.
        on_topic: Flag of ``topic_detector``, inverted: **0 means off-topic**.
    """

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

    @property
    def flagged(self) -> list[str]:
        """The detectors that fired, in field order, named as in `GuardrailsDetails`.

        A flag fires when > 0, ``toxicity`` when non-empty, ``on_topic`` when 0.
        ``keyword_detected`` is named ``keyword_detector``, ``on_topic``
        ``topic_detector``, ``*_similarity`` ``copyright_ip``/``system_prompt``.
        """
        return [
            _DETECTOR_OF_FLAG.get(name, name)
            for name in self.__struct_fields__
            if _fired(name, getattr(self, name))
        ]


class GuardrailsReport(Model, kw_only=True, frozen=True):
    """What the guardrails found on one side (input or output).

    Attributes:
        details: Per-detector details.
        summary: Per-detector flags.
    """

    details: GuardrailsDetails = msgspec.field(default_factory=GuardrailsDetails)
    summary: GuardrailsSummary = msgspec.field(default_factory=GuardrailsSummary)

    @property
    def flagged(self) -> list[str]:
        """The detectors whose summary flag fired; see `GuardrailsSummary.flagged`."""
        return self.summary.flagged

    def __repr__(self) -> str:
        # A report holds every detector's scores and texts (kilobytes); shown
        # whole it buries the answer it is attached to. to_dict() has it all.
        ran = [
            name
            for name in self.details.__struct_fields__
            if getattr(self.details, name) is not None
        ]
        return f"GuardrailsReport(flagged={self.flagged!r}, details={ran!r})"


class PolicyDetections(Model, kw_only=True, frozen=True):
    """``enkrypt_policy_detections``: the guardrails' reports; either may be absent.

    Attributes:
        input_guardrails: The report on the prompt.
        output_guardrails: The report on the completion.
    """

    input_guardrails: GuardrailsReport | None = None
    output_guardrails: GuardrailsReport | None = None

    @property
    def flagged(self) -> dict[str, list[str]]:
        """``{"input": [...], "output": [...]}``: the detectors that fired per side."""
        sides = {"input": self.input_guardrails, "output": self.output_guardrails}
        return {side: r.flagged if r else [] for side, r in sides.items()}


def convert_detections(obj: object) -> PolicyDetections:
    """Convert an already decoded JSON value (from an error body) to detections.

    Args:
        obj: The value of ``enkrypt_policy_detections``.

    Returns:
        The detections, with the same lax rules as `completion_decoder`.

    Raises:
        msgspec.ValidationError: ``obj`` does not have the shape of detections.
    """
    return msgspec.convert(obj, PolicyDetections, strict=False)
