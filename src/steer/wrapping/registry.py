"""Every patch target steer knows, gathered from the per-provider target modules."""

from __future__ import annotations

from typing import List

from steer.wrapping.specs import Target


def all_targets() -> List[Target]:
    from steer.wrapping import openai_targets
    from steer.wrapping import openai_responses_targets
    from steer.wrapping import anthropic_targets
    from steer.wrapping import google_targets
    from steer.wrapping import httpx_hooks

    return [*openai_targets.TARGETS, *openai_responses_targets.TARGETS, *anthropic_targets.TARGETS, *google_targets.TARGETS,
            *httpx_hooks.TARGETS]
