"""msgspec Structs for what the proxy answers, by what they describe.

- `guardrails`: ``enkrypt_policy_detections``, shared by every answer and error;
- `usage`: token counts, shared by every kind of answer;
- `completions`: ``POST /completions`` (a whole answer and a chunk share a shape);
- `chat`: ``POST /chat/completions`` (a message per choice, or a delta per chunk);
- `errors`: error objects inside bodies and streams.

Every model derives from `Model` (`_base`): keyword-only, immutable, lenient.
"""

from .chat import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatLogprobs,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    TokenLogprob,
    ToolCallFunction,
    TopLogprob,
)
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
from .usage import CompletionTokensDetails, PromptTokensDetails, Usage

__all__ = [
    "AdherenceDetection",
    "BiasDetection",
    "ChatCompletion",
    "ChatCompletionChoice",
    "ChatCompletionChunk",
    "ChatCompletionChunkChoice",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatLogprobs",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "Completion",
    "CompletionChoice",
    "CompletionTokensDetails",
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
    "PromptTokensDetails",
    "RelevancyDetection",
    "SpongeAttackDetection",
    "SystemPromptDetection",
    "TokenLogprob",
    "ToolCallFunction",
    "TopLogprob",
    "TopicDetection",
    "ToxicityDetection",
    "Usage",
]
