"""Every telemetry name steer emits, in one place.

GenAI semantic conventions as released in semantic-conventions v1.41 (Development status); a later
version is an edit of this file. steer's own names (no convention exists) live under ``steer.*``.
"""

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
INSTRUMENTATION_SCOPE = "steer"

# --- span attributes (semconv) ----------------------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_TOP_K = "gen_ai.request.top_k"
REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
OUTPUT_TYPE = "gen_ai.output.type"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
USAGE_REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
OPENAI_API_TYPE = "openai.api.type"
OPENAI_SERVICE_TIER = "openai.response.service_tier"
OPENAI_SYSTEM_FINGERPRINT = "openai.response.system_fingerprint"
TOKEN_TYPE = "gen_ai.token.type"

# --- steer.context (issue 17): what the application attaches; defined beside steer.context -----------
from steer.attached import CONVERSATION_ID, SESSION_ID, USER_ID  # noqa: E402,F401  (gen_ai.conversation.id, session.id, user.id)
# --- content & the details event (helper "content", issue 14 items 1-2) ---------------------------------
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
EVENT_INFERENCE_DETAILS = "gen_ai.client.inference.operation.details"  # a log record's event_name

# --- span attributes (steer) ------------------------------------------------------------------------
STREAM_CHUNKS = "steer.stream.chunks"
STREAM_MAX_CHUNK_GAP = "steer.stream.max_chunk_gap"
STREAM_MEAN_CHUNK_GAP = "steer.stream.mean_chunk_gap"
STREAM_END = "steer.stream.end"
USAGE_SOURCE = "steer.usage.source"
USAGE_ESTIMATED_INPUT_TOKENS = "steer.usage.estimated.input_tokens"
USAGE_ESTIMATED_OUTPUT_TOKENS = "steer.usage.estimated.output_tokens"
USAGE_CONFIDENCE = "steer.usage.confidence"
USAGE_ESTIMATE_METHOD = "steer.usage.estimate_method"
JSON_OBJECTS = "steer.json.objects"
JSON_DUPLICATES_DROPPED = "steer.json.duplicates_dropped"
JSON_VALID = "steer.json.valid"
JSON_REPAIRED = "steer.json.repaired"
JSON_ERROR = "steer.json.error"
TOOL_CALLS = "steer.tool_calls"
DECODE_ERRORS = "steer.decode.errors"

# --- live stall detection (issue 17) ----------------------------------------------------------------
STREAM_STALLS = "steer.stream.stalls"  # span: stalls the watchdog saw while the stream was open
STREAM_STALL_EVENT = "steer.stream.stall"  # span event, one per stall, at the time the silence began
STREAM_STALL_GAP = "steer.stream.stall.gap"  # its attribute: the silence, s
STREAM_STALL_RESUMED = "steer.stream.stall.resumed"  # its attribute: a chunk came after it (else the call ended)
METRIC_STREAMS_STALLED = "steer.client.streams.stalled"  # observable gauge: open streams silent > stall_after now

# --- cost (issue 17): genai-prices' data ----------------------------------------------------------
USAGE_COST = "steer.usage.cost"  # span, USD
USAGE_COST_SOURCE = "steer.usage.cost.source"  # span and metric: "reported" / "estimated" token counts
USAGE_COST_PRICES_VERSION = "steer.usage.cost.prices_version"  # span: "genai-prices 0.2.3"
USAGE_COST_UNPRICED = "steer.usage.cost.unpriced"  # span and metric: why no cost (unknown_model, no_usage, ...)
METRIC_COST = "steer.client.cost"  # counter, USD, by provider, model and source
METRIC_COST_UNPRICED = "steer.client.cost.unpriced"  # counter, {call}, by provider, model and reason

# --- metrics ----------------------------------------------------------------------------------------
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
METRIC_STREAM_CHUNKS = "steer.client.stream.chunks"
METRIC_TOKEN_USAGE_ESTIMATED = "steer.client.token.usage.estimated"
METRIC_STREAMS_ACTIVE = "steer.client.streams.active"
METRIC_INTERNAL_ERRORS = "steer.internal.errors"
# Span-level facts the dashboards need as metrics too (recorded once per call, at its end).
METRIC_USAGE_CONFIDENCE = "steer.client.token.usage.confidence"
METRIC_JSON_OUTPUTS = "steer.client.json.outputs"
METRIC_JSON_DUPLICATES_DROPPED = "steer.client.json.duplicates_dropped"

# --- wire values that OTLP cannot carry (issue 19 item 5; telemetry/exportable.py) -----------------
METRIC_DECODE_ERRORS = "steer.decode.errors"  # counter, same count as the span attribute DECODE_ERRORS
DECODE_REASON = "steer.decode.reason"  # its one attribute beyond the base metric attributes:
DECODE_REASON_UNDECODABLE = "undecodable"  # a chunk or frame the decoder could not read
DECODE_REASON_INVALID_UTF8 = "invalid_utf8"  # a string with a lone surrogate: left out, or repaired
DECODE_REASON_OUT_OF_RANGE = "out_of_range"  # an integer outside int64
# "invalid_token_count": a token count that is not a non-negative int64 (providers/base.py)

# --- retries: the SDKs' own HTTP attempts inside one call (issue 19 item 2) -------------------------
ATTEMPTS = "steer.attempts"  # span: HTTP attempts of the call, 1 + the SDK's retries
LAST_ATTEMPT_TIME_TO_FIRST_CHUNK = "steer.last_attempt.time_to_first_chunk"  # span, s: from the last attempt's send
EVENT_RETRY = "steer.retry"  # span event, one per attempt that failed and was retried
RETRY_ATTEMPT = "steer.retry.attempt"  # which attempt failed (1 = the first request)
RETRY_ATTEMPT_DURATION = "steer.retry.attempt_duration"  # s: its send to its failure
RETRY_BACKOFF = "steer.retry.backoff"  # s: its failure to the next attempt's send
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
METRIC_RETRIES = "steer.client.retries"  # counter; base metric attributes + error.type (the failure retried)

# Explicit bucket advice, as semconv gives it.
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

# The only attributes allowed on metrics (bounded cardinality: no ids, no content).
METRIC_ATTRIBUTES = (OPERATION_NAME, PROVIDER_NAME, REQUEST_MODEL, RESPONSE_MODEL, SERVER_ADDRESS, SERVER_PORT, ERROR_TYPE)

ERROR_TYPE_OTHER = "_OTHER"

# Size bounds on what steer emits. Ids, model names, finish reasons and error types come from the
# wire, where a broken or hostile server can put megabytes; captured content has its own cap
# (content_max_chars). Strings past a bound are cut, sequences past a bound keep their head.
MAX_ATTRIBUTE_CHARS = 1024  # one span attribute string (an id is ~50, a model name ~100)
MAX_ATTRIBUTE_ITEMS = 128  # one span attribute sequence (finish reasons: one per choice, n <= 128)
MAX_METRIC_ATTRIBUTE_CHARS = 256  # one metric attribute string (they key every time series)
MAX_EXCEPTION_MESSAGE_CHARS = 4096  # exception.message of a recorded exception
MAX_EXCEPTION_STACKTRACE_CHARS = 16384  # exception.stacktrace: its head and its tail are kept

# --- the newest GenAI conventions (semantic-conventions-genai; opt-in) ------------------------------
# Emitted instead of the v1.41 names above when OTEL_SEMCONV_STABILITY_OPT_IN lists
# gen_ai_latest_experimental. The documents and commits followed are named in docs/telemetry.md.
LATEST_SCHEMA_URL = "https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev"
USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
REQUEST_REASONING_LEVEL = "gen_ai.request.reasoning.level"
REQUEST_PREVIOUS_RESPONSE_ID = "gen_ai.request.previous_response.id"
TOKEN_MODALITY = "gen_ai.token.modality"
TOKEN_MODALITY_UNKNOWN = "unknown"
TOKEN_MODALITY_TEXT = "text"
TOKEN_MODALITIES = ("text", "image", "audio")  # per-modality usage attributes and counter points
METRIC_INFERENCE_DURATION = "gen_ai.client.inference.duration"
METRIC_INFERENCE_TIME_TO_FIRST_CHUNK = "gen_ai.client.inference.time_to_first_chunk"
METRIC_INFERENCE_TIME_PER_OUTPUT_CHUNK = "gen_ai.client.inference.time_per_output_chunk"
METRIC_INFERENCE_USAGE_INPUT_TOKENS = "gen_ai.client.inference.usage.input_tokens"
METRIC_INFERENCE_USAGE_OUTPUT_TOKENS = "gen_ai.client.inference.usage.output_tokens"
METRIC_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.client.inference.usage.cache_read.input_tokens"
METRIC_INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.client.inference.usage.cache_write.input_tokens"
METRIC_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.client.inference.usage.reasoning.output_tokens"
METRIC_INFERENCE_OPERATION_INPUT_TOKENS = "gen_ai.client.inference.operation.input_tokens"
METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS = "gen_ai.client.inference.operation.output_tokens"
# gen_ai.client.operation.duration stays, in the newest conventions, for operations that are not inference.
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
# OpenAI's refinement of the seven token metrics (provider "openai" only).
OPENAI_TOKEN_METRIC_ATTRIBUTES = {"service_tier": OPENAI_SERVICE_TIER, "system_fingerprint": OPENAI_SYSTEM_FINGERPRINT}

SEMCONV_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
SEMCONV_OPT_IN_LATEST = "gen_ai_latest_experimental"


def usage_modality_attribute(modality: str, direction: str) -> str:
    """``gen_ai.usage.{text,image,audio}.{input,output}_tokens`` (newest conventions only)."""
    return f"gen_ai.usage.{modality}.{direction}_tokens"


class Conventions:
    """The names that differ between the two convention versions, chosen once per Runtime."""

    __slots__ = ("latest", "schema_url", "inference_duration", "time_to_first_chunk", "time_per_output_chunk",
                 "cache_write_attribute")

    def __init__(self, latest: bool) -> None:
        self.latest = latest
        self.schema_url = LATEST_SCHEMA_URL if latest else SCHEMA_URL
        self.inference_duration = METRIC_INFERENCE_DURATION if latest else METRIC_OPERATION_DURATION
        self.time_to_first_chunk = METRIC_INFERENCE_TIME_TO_FIRST_CHUNK if latest else METRIC_TIME_TO_FIRST_CHUNK
        self.time_per_output_chunk = METRIC_INFERENCE_TIME_PER_OUTPUT_CHUNK if latest else METRIC_TIME_PER_OUTPUT_CHUNK
        self.cache_write_attribute = USAGE_CACHE_WRITE_INPUT_TOKENS if latest else USAGE_CACHE_CREATION_INPUT_TOKENS


V1_41 = Conventions(latest=False)
LATEST = Conventions(latest=True)


def conventions(name: str) -> Conventions:
    """``Settings.semconv`` ("v1.41" or "latest") to its names."""
    return LATEST if name == "latest" else V1_41
