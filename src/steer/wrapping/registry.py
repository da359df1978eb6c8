"""Every patch target steer knows, gathered from the per-provider target modules."""

from __future__ import annotations

from typing import List

from steer.wrapping.specs import Target


def all_targets() -> List[Target]:
    from steer.wrapping import openai_targets

    return [*openai_targets.TARGETS]
