"""Replay callers for the SDKs beyond OpenAI Chat: how each makes the recorded request."""

from __future__ import annotations
