"""Every patch target steer knows, gathered from the per-provider target modules.

``instrument(providers=...)`` imports only the target modules of the groups asked for (and through
them their decoders), plus httpx's send hook, which every SDK group also needs (it sees each HTTP
attempt): ``providers=["openai"]`` never loads the anthropic or google-genai target code.
"""

from __future__ import annotations

import importlib
from typing import Iterable, List, Optional

from steer.wrapping.specs import Target

# provider group -> its target modules (each defines TARGETS)
MODULES = {
    "openai": ("steer.wrapping.openai_targets", "steer.wrapping.openai_responses_targets"),
    "anthropic": ("steer.wrapping.anthropic_targets",),
    "google_genai": ("steer.wrapping.google_targets",),
    "httpx": ("steer.wrapping.httpx_hooks", "steer.wrapping.httpx_release"),
}


def all_targets(groups: Optional[Iterable[str]] = None) -> List[Target]:
    """The targets enabled by ``groups`` (every target when None), in registry order."""
    if groups is None:
        chosen = set(MODULES)
    else:
        chosen = set(groups)
        chosen = chosen | {"httpx"} if chosen else chosen  # httpx's send serves every SDK group too
    targets = [target for group, modules in MODULES.items() if group in chosen
               for module in modules for target in importlib.import_module(module).TARGETS]
    return targets if groups is None else [t for t in targets if t.enabled(tuple(groups))]
