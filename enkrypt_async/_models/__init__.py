"""msgspec Structs for what the proxy answers, by what they describe.

- `guardrails`: ``enkrypt_policy_detections``, shared by every answer and error;
- `usage`: token counts, shared by every kind of answer;
- `completions`: ``POST /completions`` (a whole answer and a chunk share a shape);
- `errors`: error objects inside bodies and streams.

Every model derives from `Model` (`_base`): keyword-only, immutable, lenient.
"""

from .completions import Completion, CompletionChoice, Logprobs
from .errors import ErrorInfo
from .guardrails import (
    AdherenceDetection,
    BiasDetection,
    CopyrightIPDetection,
    GuardrailsDetails,
    GuardrailsReport,
    GuardrailsSummary,
    HallucinationDetection,
    InjectionAttackDetection,
    KeywordDetection,
    NSFWDetection,
    PIIDetection,
    PolicyDetections,
    PolicyViolationDetection,
    RelevancyDetection,
    SpongeAttackDetection,
    SystemPromptDetection,
    TopicDetection,
    ToxicityDetection,
)
from .usage import Usage

__all__ = [
    "AdherenceDetection",
    "BiasDetection",
    "Completion",
    "CompletionChoice",
    "CopyrightIPDetection",
    "ErrorInfo",
    "GuardrailsDetails",
    "GuardrailsReport",
    "GuardrailsSummary",
    "HallucinationDetection",
    "InjectionAttackDetection",
    "KeywordDetection",
    "Logprobs",
    "NSFWDetection",
    "PIIDetection",
    "PolicyDetections",
    "PolicyViolationDetection",
    "RelevancyDetection",
    "SpongeAttackDetection",
    "SystemPromptDetection",
    "TopicDetection",
    "ToxicityDetection",
    "Usage",
]
