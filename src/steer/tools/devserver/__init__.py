"""Loopback fake LLM provider (OpenAI, Anthropic, Gemini wire formats) for demos, tests and benchmarks."""

from .faults import FAULTS
from .server import DevServer, RecordedRequest

__all__ = ["DevServer", "FAULTS", "RecordedRequest"]
