"""Guardrail detectors computed on text, and the deployment policy that picks them.

Every detector is a small, fast, deterministic scorer (precompiled regexes and
word lists), not a model: good enough to make each detector fire on purpose in
a test, and to stay quiet on ordinary text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ALL_DETECTORS",
    "DeploymentPolicy",
    "GuardrailsResult",
    "run_guardrails",
]

#: Names of the detectors the emulator computes.
ALL_DETECTORS: Final = frozenset(
    {
        "bias",
        "injection_attack",
        "keyword_detector",
        "nsfw",
        "pii",
        "policy_violation",
        "toxicity",
    }
)
_DEFAULT_BLOCK: Final = frozenset({"injection_attack"})
_THRESHOLD: Final = 0.5
_NO_VIOLATION: Final = "No Violation Found"


@dataclass(frozen=True)
class DeploymentPolicy:
    """The guardrails of one emulated deployment.

    Examples:
        ```python
        strict = DeploymentPolicy(block={"injection_attack", "pii"}, keywords=("acme",))
        async with EnkryptEmulator(deployments={"strict": strict}) as emu: ...
        ```

    Attributes:
        input_detectors: Detectors run on the prompt (default: all of them).
        output_detectors: Detectors run on the generated text (default: all).
        block: Input detectors that block the request when they fire (default:
            `injection_attack`, if it runs on the input).
        block_status: HTTP status of a blocked request.
        keywords: Case-insensitive whole-word keywords for `keyword_detector`.
        policy: Name of the policy reported by `policy_violation`.
        policy_terms: Words or phrases that violate `policy`.
        model: Model name answered when the request names none.
    """

    input_detectors: Collection[str] = ALL_DETECTORS
    output_detectors: Collection[str] = ALL_DETECTORS
    block: Collection[str] = frozenset({"injection_attack"})
    block_status: int = 400
    keywords: Sequence[str] = ("confidential", "internal only")
    policy: str = "No weapons or illegal drugs"
    policy_terms: Sequence[str] = ("bomb", "explosive", "weapon", "cocaine", "meth")
    model: str = "enkrypt-emulator-1"
    _keyword_re: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _policy_re: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        # The default block list (the very object of the field's default) only
        # applies where injection_attack runs on the input; an explicit one must fit.
        default_block = self.block is _BLOCK_FIELD_DEFAULT
        for name in ("input_detectors", "output_detectors", "block"):
            value = frozenset(getattr(self, name))
            unknown = sorted(value - ALL_DETECTORS)
            if unknown:
                raise ValueError(f"{name}: unknown detectors {unknown}")
            object.__setattr__(self, name, value)
        inputs = frozenset(self.input_detectors)
        if default_block:
            object.__setattr__(self, "block", _DEFAULT_BLOCK & inputs)
        elif not frozenset(self.block) <= inputs:
            raise ValueError("block must be a subset of input_detectors")
        if not 400 <= self.block_status <= 599:
            raise ValueError("block_status must be an HTTP error status (400-599)")
        for name in ("keywords", "policy_terms"):
            value = getattr(self, name)
            object.__setattr__(
                self, name, (value,) if isinstance(value, str) else tuple(value)
            )
        object.__setattr__(self, "_keyword_re", _phrases_re(self.keywords))
        object.__setattr__(self, "_policy_re", _phrases_re(self.policy_terms))


_BLOCK_FIELD_DEFAULT: Final = DeploymentPolicy.__dataclass_fields__["block"].default


@dataclass(frozen=True)
class GuardrailsResult:
    """Detections for one side (input or output).

    Attributes:
        report: The `{"details": ..., "summary": ...}` JSON object.
        fired: Names of the detectors that fired, in a stable order.
    """

    report: dict[str, object]
    fired: tuple[str, ...]


def _phrases_re(phrases: Iterable[str]) -> re.Pattern[str] | None:
    words = [p.split() for p in phrases if p.strip()]
    if not words:
        return None
    # Longest first so "internal only" wins over a shorter overlapping keyword.
    alts = sorted((r"\s+".join(map(re.escape, w)) for w in words), key=len)
    # Lookarounds, not \b, so that keywords such as "c++" work too.
    joined = "|".join(reversed(alts))
    return re.compile(rf"(?<!\w)(?:{joined})(?!\w)", re.IGNORECASE)


def _words_re(words: Iterable[str]) -> re.Pattern[str]:
    pattern = _phrases_re(words)
    assert pattern is not None
    return pattern


def _noise(text: str, salt: str, low: float, high: float) -> float:
    """Return a small, stable "model noise" float in [low, high) for `text`."""
    digest = hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest()
    return low + (high - low) * int.from_bytes(digest, "big") / 2.0**64


def _score(hits: int, base: float, per_hit: float = 0.82) -> float:
    """Combine a base noise with `hits` independent pieces of evidence."""
    return round(1.0 - (1.0 - base) * (1.0 - per_hit) ** hits, 14)


# --- keyword_detector and policy_violation ---------------------------------------


def _keywords(text: str, policy: DeploymentPolicy) -> tuple[dict[str, object], bool]:
    counts: dict[str, int] = {}
    order: dict[str, int] = {}
    canonical = {" ".join(k.lower().split()): k for k in policy.keywords}

    def redact(match: re.Match[str]) -> str:
        norm = " ".join(match.group(0).lower().split())
        key = canonical.get(norm, norm)
        counts[key] = counts.get(key, 0) + 1
        number = order.setdefault(key, len(order))
        return f"[KEYWORD_{number}]"

    pattern = policy._keyword_re
    redacted = pattern.sub(redact, text) if pattern is not None else text
    found: list[str] | dict[str, object] = list(order) if order else {}
    details: dict[str, object] = {
        "detected_keywords": found,
        "detected_counts": counts,
        "redacted_text": redacted,
    }
    return details, bool(order)


def _policy(text: str, policy: DeploymentPolicy) -> tuple[dict[str, object], bool]:
    pattern = policy._policy_re
    match = pattern.search(text) if pattern is not None else None
    if match is None:
        clean: dict[str, object] = {
            "violating_policy": _NO_VIOLATION,
            "explanation": _NO_VIOLATION + ".",
        }
        return clean, False
    explanation = (
        f"The text mentions {match.group(0).lower()!r}, "
        f"which the policy {policy.policy!r} does not allow."
    )
    return {"violating_policy": policy.policy, "explanation": explanation}, True


# --- pii --------------------------------------------------------------------------

_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# (group in details, placeholder name, pattern); earlier entries win overlaps.
_PII: Final[tuple[tuple[str, str, re.Pattern[str]], ...]] = (
    (
        "secrets",
        "SECRET",
        re.compile(
            r"\bsk-[A-Za-z0-9_\-]{16,}"
            r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b"
            r"|\bxox[abpr]-[A-Za-z0-9\-]{10,}"
            r"|\b[0-9a-fA-F]{32,}\b"
            # An API-key-shaped token: 40+ word characters mixing letters and digits.
            r"|(?<![\w\-])(?=[\w\-]{0,200}\d)(?=[\w\-]{0,200}[A-Za-z])"
            r"[\w\-]{40,200}(?![\w\-])"
        ),
    ),
    ("url", "URL", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]")),
    (
        "pii",
        "EMAIL_ADDRESS",
        re.compile(
            r"(?<![\w.%+\-])[\w.%+\-]{1,64}@[A-Za-z0-9\-]{1,63}"
            r"(?:\.[A-Za-z0-9\-]{1,63}){0,6}\.[A-Za-z]{2,24}\b"
        ),
    ),
    (
        "ip_address",
        "IP_ADDRESS",
        re.compile(rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b"),
    ),
    (
        "pii",
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w.])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])"
            r"\d{3}[\s.\-]\d{4}(?![\w.])"
        ),
    ),
)


def _pii(text: str) -> tuple[dict[str, object], bool]:
    groups: dict[str, dict[str, str]] = {
        "pii": {},
        "secrets": {},
        "ip_address": {},
        "url": {},
    }
    taken: list[tuple[int, int]] = []
    numbers: dict[str, dict[str, str]] = {}
    for group, label, pattern in _PII:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            seen = numbers.setdefault(label, {})
            value = match.group(0)
            if value not in seen:
                seen[value] = f"<{label}_{len(seen)}>"
                groups[group][seen[value]] = value
    return dict(groups), any(groups.values())


# --- injection_attack -------------------------------------------------------------

_INJECTION: Final[tuple[tuple[re.Pattern[str], float], ...]] = tuple(
    (re.compile(pattern, re.IGNORECASE), weight)
    for pattern, weight in (
        (
            r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+)?"
            r"(?:previous|prior|above|earlier|preceding|your)\s+"
            r"(?:instructions|prompts?|rules|directions|guidelines|messages)",
            0.995,
        ),
        (r"\bdisregard\s+(?:all|everything)\s+(?:prior|before|above)\b", 0.99),
        (r"\byou\s+are\s+now\s+(?:DAN|an?\s+unrestricted|in\s+developer\s+mode)", 0.99),
        (r"\b(?:do\s+anything\s+now|jailbreak|developer\s+mode\s+enabled)\b", 0.95),
        (
            r"\b(?:reveal|show|print|repeat|leak)\s+(?:me\s+)?(?:your|the)\s+"
            r"(?:system|hidden|initial|original)\s+(?:prompt|instructions)",
            0.98,
        ),
        (r"\bpretend\s+(?:that\s+)?you\s+(?:have\s+no|are\s+not\s+bound)", 0.9),
        (r"\bnew\s+instructions\s*:", 0.8),
        (r"\bact\s+as\s+if\s+you\s+have\s+no\s+(?:rules|restrictions|filters)", 0.9),
    )
)


def _injection(text: str) -> tuple[dict[str, object], bool]:
    attack = _noise(text, "injection", 0.00005, 0.002)
    for pattern, weight in _INJECTION:
        if pattern.search(text):
            attack = 1.0 - (1.0 - attack) * (1.0 - weight)
    micro = min(999_999, max(1, round(attack * 1_000_000)))
    safe = 1_000_000 - micro
    # Strings with 6 decimals that sum to exactly 1, as the proxy sends them.
    details: dict[str, object] = {"safe": f"0.{safe:06d}", "attack": f"0.{micro:06d}"}
    return details, micro / 1_000_000 > _THRESHOLD


# --- toxicity and nsfw ------------------------------------------------------------

_INSULTS: Final = (
    *("idiot", "idiots", "moron", "morons", "stupid", "loser", "losers", "dumb"),
    *("pathetic", "worthless", "imbecile", "ugly", "clown", "fool"),
)
_TOXIC: Final[dict[str, re.Pattern[str]]] = {
    "toxicity": _words_re(("hate you", "shut up", "disgusting", "trash", "garbage")),
    "severe_toxicity": _words_re(("go die", "kill yourself", "piece of garbage")),
    "obscene": _words_re(("damn", "crap", "crappy", "shit", "bullshit", "wtf")),
    "threat": _words_re(
        ("kill you", "hurt you", "beat you up", "destroy you", "you will regret")
    ),
    "insult": _words_re(_INSULTS),
    "identity_hate": re.compile(
        r"\b(?:hate|despise)\s+(?:all\s+)?(?:women|men|immigrants|foreigners|"
        r"muslims|jews|christians|gays|black\s+people|white\s+people|asians)\b",
        re.IGNORECASE,
    ),
}
_NSFW_RE: Final = _words_re(
    ("nsfw", "porn", "porno", "nude", "nudes", "naked", "xxx", "erotic", "sex")
)


def _toxicity(text: str) -> tuple[dict[str, object], list[str]]:
    scores: dict[str, float] = {
        name: _score(len(pattern.findall(text)), _noise(text, name, 1e-4, 6e-4))
        for name, pattern in _TOXIC.items()
    }
    # Any toxic category also makes the text toxic overall.
    scores["toxicity"] = max(scores.values())
    triggered = [name for name, score in scores.items() if score > _THRESHOLD]
    return dict(scores), triggered


def _nsfw(text: str) -> tuple[dict[str, object], bool]:
    nsfw = _score(len(_NSFW_RE.findall(text)), _noise(text, "nsfw", 0.001, 0.05))
    details: dict[str, object] = {"sfw": round(1.0 - nsfw, 14), "nsfw": nsfw}
    return details, nsfw > _THRESHOLD


# --- bias -------------------------------------------------------------------------

_GROUPS: Final = (
    r"(?:women|men|girls|boys|old\s+people|young\s+people|immigrants|foreigners|"
    r"blondes|millennials|boomers|teenagers|engineers|lawyers)"
)
_BIAS_RE: Final = re.compile(
    r"\b(?:all|every|most)\s+" + _GROUPS + r"\s+(?:are|can't|cannot|never|always)\b"
    r"|\b" + _GROUPS + r"\s+(?:are\s+(?:always|never|naturally|just)|can't|cannot)\b",
    re.IGNORECASE,
)
_BIAS_FIX_RE: Final = re.compile(r"\b(?:all|every|most)\s+(?=" + _GROUPS + ")", re.I)
_BIAS_ADVERB_RE: Final = re.compile(r"\b(?:always|never|naturally)\b", re.IGNORECASE)


def _bias(text: str) -> tuple[dict[str, object], bool]:
    if not _BIAS_RE.search(text):
        return {"bias_detected": False, "debiased_text": "No rephrasing needed."}, False
    debiased = _BIAS_FIX_RE.sub("some ", text)
    debiased = _BIAS_ADVERB_RE.sub("sometimes", debiased)
    return {"bias_detected": True, "debiased_text": debiased}, True


# --- the report -------------------------------------------------------------------

_Detector = Callable[[str, DeploymentPolicy], tuple[dict[str, object], bool]]
_SIMPLE: Final[dict[str, tuple[str, _Detector]]] = {
    # detector name -> (summary flag, detector)
    "keyword_detector": ("keyword_detected", _keywords),
    "policy_violation": ("policy_violation", _policy),
    "bias": ("bias", lambda text, _: _bias(text)),
    "pii": ("pii", lambda text, _: _pii(text)),
    "nsfw": ("nsfw", lambda text, _: _nsfw(text)),
    "injection_attack": ("injection_attack", lambda text, _: _injection(text)),
}


def run_guardrails(
    text: str, detectors: Collection[str], policy: DeploymentPolicy
) -> GuardrailsResult:
    """Run the enabled `detectors` on `text`.

    Args:
        text: The prompt (input side) or the generated text (output side).
        detectors: Names of the enabled detectors; only these appear.
        policy: The deployment's policy (keywords, policy terms).

    Returns:
        The `{"details", "summary"}` report and the detectors that fired.
    """
    details: dict[str, object] = {}
    summary: dict[str, object] = {}
    fired: list[str] = []
    for name in sorted(detectors):
        if name == "toxicity":
            details[name], triggered = _toxicity(text)
            summary[name] = triggered if triggered else {}
            hit = bool(triggered)
        else:
            flag, detector = _SIMPLE[name]
            details[name], hit = detector(text, policy)
            summary[flag] = int(hit)
        if hit:
            fired.append(name)
    return GuardrailsResult({"details": details, "summary": summary}, tuple(fired))
