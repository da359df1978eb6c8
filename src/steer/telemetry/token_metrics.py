"""Token metrics, in the shape of each convention version; Instruments picks one at creation.

v1.41: one histogram, ``gen_ai.client.token.usage``, a point per direction (``gen_ai.token.type``),
only for usage the provider reported.

Newest conventions (semantic-conventions-genai, ``gen-ai-token-metrics.md``): five monotonic
``gen_ai.client.inference.usage.*`` counters, each point carrying the required
``gen_ai.token.modality``, added for every inference call, failed ones included (``0`` under
``unknown`` when no usage arrived), so that totals and spend add up; and two per-operation
histograms, ``gen_ai.client.inference.operation.{input,output}_tokens``, with no modality, recorded
only for calls that succeeded with reported usage (a failed call's zero would skew the
percentiles they exist for). OpenAI refines all seven with ``openai.response.service_tier`` and
``openai.response.system_fingerprint``.

steer's own estimates never enter either shape: they go to ``steer.client.token.usage.estimated``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from steer.call import CallInfo, Outcome
from steer.telemetry import semconv as sc

_TOKENS = dict(unit="{token}", explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS)


class TokenUsageHistogram:
    """v1.41: ``gen_ai.client.token.usage`` with ``gen_ai.token.type``."""

    def __init__(self, meter: Any) -> None:
        self.histogram = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, description="Number of input and output tokens used (reported by the provider).", **_TOKENS
        )

    def record(self, call: CallInfo, outcome: Outcome, attrs: Dict[str, Any], ctx: Any = None) -> None:
        usage = outcome.usage
        if usage.source != "reported":
            return
        if usage.input_tokens is not None:
            self.histogram.record(usage.input_tokens, {**attrs, sc.TOKEN_TYPE: "input"}, context=ctx)
        if usage.output_tokens is not None:
            self.histogram.record(usage.output_tokens, {**attrs, sc.TOKEN_TYPE: "output"}, context=ctx)


# (counter name, Usage field) of the newest conventions' usage counters.
_COUNTERS: Tuple[Tuple[str, str, str], ...] = (
    (sc.METRIC_INFERENCE_USAGE_INPUT_TOKENS, "input_tokens", "The number of input (prompt) tokens used, including cached tokens."),
    (sc.METRIC_INFERENCE_USAGE_OUTPUT_TOKENS, "output_tokens", "The number of output (completion) tokens used, including reasoning tokens."),
    (sc.METRIC_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_input_tokens", "The number of input tokens served from a provider-managed cache."),
    (sc.METRIC_INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS, "cache_creation_input_tokens", "The number of input tokens written to a provider-managed cache."),
    (sc.METRIC_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS, "reasoning_tokens", "The number of output tokens used for reasoning."),
)
_OUTPUT = ("output_tokens", "reasoning_tokens")  # the counters of output tokens (the rest count input)


class InferenceTokenMetrics:
    """Newest conventions: usage counters by modality plus per-operation histograms."""

    def __init__(self, meter: Any) -> None:
        self.counters = tuple(
            (meter.create_counter(name, unit="{token}", description=description), field_name, field_name in _OUTPUT)
            for name, field_name, description in _COUNTERS
        )
        self.operation_input = meter.create_histogram(
            sc.METRIC_INFERENCE_OPERATION_INPUT_TOKENS, description="The number of input (prompt) tokens used per inference operation.", **_TOKENS
        )
        self.operation_output = meter.create_histogram(
            sc.METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS, description="The number of output (completion) tokens used per inference operation.", **_TOKENS
        )

    def record(self, call: CallInfo, outcome: Outcome, attrs: Dict[str, Any], ctx: Any = None) -> None:
        if call.operation not in sc.INFERENCE_OPERATIONS:
            return
        if call.provider == "openai":
            attrs = {**attrs, **_openai_attributes(outcome)}
        usage = outcome.usage
        reported = usage.source == "reported"
        # No provider's usage is broken down by modality in what steer decodes: input tokens are "unknown".
        # Output tokens are "text" when the request left the model no other output (the provider's
        # output_modality); a call without usage records its 0 under "unknown".
        unknown = {**attrs, sc.TOKEN_MODALITY: sc.TOKEN_MODALITY_UNKNOWN}
        output = unknown
        if reported and call.params.get("output_modality") == sc.TOKEN_MODALITY_TEXT:
            output = {**attrs, sc.TOKEN_MODALITY: sc.TOKEN_MODALITY_TEXT}
        for counter, field_name, is_output in self.counters:
            value = getattr(usage, field_name) if reported else None
            counter.add(value if value is not None else 0, output if is_output else unknown, context=ctx)
        if reported and outcome.error_type is None:
            if usage.input_tokens is not None:
                self.operation_input.record(usage.input_tokens, attrs, context=ctx)
            if usage.output_tokens is not None:
                self.operation_output.record(usage.output_tokens, attrs, context=ctx)


def _openai_attributes(outcome: Outcome) -> Dict[str, Any]:
    found = {}
    for key, name in sc.OPENAI_TOKEN_METRIC_ATTRIBUTES.items():
        value = outcome.extra.get(key)
        if isinstance(value, str) and value:
            found[name] = value[:sc.MAX_METRIC_ATTRIBUTE_CHARS]
    return found


def token_metrics(meter: Any, conventions: sc.Conventions) -> Any:
    return InferenceTokenMetrics(meter) if conventions.latest else TokenUsageHistogram(meter)
