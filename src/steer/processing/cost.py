"""The USD cost of one call, from the price data of ``genai-prices`` (shipped inside the package: nothing
is fetched at run time; steer never starts its ``UpdatePrices`` auto-updater).

The library is imported lazily: ``warm_up()`` (at ``instrument()``/``wrap()``) loads it and its data on a
background thread, so neither ``import steer`` nor the first call pays the seconds that takes. A call is
priced at its end, with the usage steer has for it — reported, or else the estimate — and the cached
input, cache writes and reasoning tokens broken out as genai-prices prices them. A model the data does
not know gets no cost: the reason is returned (and counted by the caller), never a guess.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from steer.events import Usage

# gen_ai.provider.name -> genai-prices provider id (the calls' base URL decided the former).
PROVIDER_IDS = {
    "openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google", "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google", "x_ai": "x-ai", "azure.ai.openai": "azure", "groq": "groq", "mistral_ai": "mistral",
    "deepseek": "deepseek", "openrouter": "openrouter", "aws.bedrock": "aws", "cohere": "cohere",
    "perplexity": "perplexity",
}
UNKNOWN_MODEL = "unknown_model"  # the price data has no such provider or model
NO_USAGE = "no_usage"  # neither reported nor estimated tokens
NO_PRICE_DATA = "no_price_data"  # genai-prices is not installed (Python < 3.11, or the `cost` extra left out)
_MAX_UNKNOWN = 1024  # models remembered as unknown (each lookup miss costs a scan of the data)


@dataclass(frozen=True)
class Cost:
    usd: float
    source: str  # "reported" or "estimated": where the token counts came from
    prices_version: str  # the genai-prices release whose data priced it


_library: Any = None
_version = ""
_load_lock = threading.Lock()
_unknown: Dict[Tuple[str, str], bool] = {}


def _load() -> Any:
    """genai-prices with its bundled data loaded (first use: about a second and a half); None if absent."""
    global _library, _version
    if _library is None:
        with _load_lock:
            if _library is None:
                try:
                    import genai_prices
                    from genai_prices import data_snapshot

                    data_snapshot.get_snapshot()  # the data module: most of the loading time
                    _version = f"genai-prices {genai_prices.__version__}"
                    _library = genai_prices
                except ImportError:
                    _library = False
    return _library or None


def warm_up() -> None:
    """Load the library and its data on a daemon thread, off every caller's path."""
    if _library is None:
        threading.Thread(target=_load, name="steer-prices-warm-up", daemon=True).start()


def price(provider: str, model: Optional[str], usage: Usage, when_ns: int) -> Union[Cost, str]:
    """The call's Cost, or the reason it has none (UNKNOWN_MODEL, NO_USAGE, NO_PRICE_DATA)."""
    if usage.source not in ("reported", "estimated") or (usage.input_tokens is None and usage.output_tokens is None):
        return NO_USAGE
    provider_id = PROVIDER_IDS.get(provider, provider)
    if not model or (provider_id, model) in _unknown:
        return UNKNOWN_MODEL
    library = _load()
    if library is None:
        return NO_PRICE_DATA
    counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
              "cache_read_tokens": usage.cache_read_input_tokens, "cache_write_tokens": usage.cache_creation_input_tokens,
              "output_reasoning_tokens": usage.reasoning_tokens}
    from datetime import datetime, timezone

    try:
        result = library.calc_price(library.Usage(**{k: v for k, v in counts.items() if v is not None}), model,
                                    provider_id=provider_id,
                                    genai_request_timestamp=datetime.fromtimestamp(when_ns / 1e9, tz=timezone.utc))
    except LookupError:
        if len(_unknown) < _MAX_UNKNOWN:
            _unknown[(provider_id, model)] = True
        return UNKNOWN_MODEL
    return Cost(usd=float(result.total_price), source=usage.source, prices_version=_version)
