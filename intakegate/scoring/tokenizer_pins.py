"""Tokenizer settings and a vocabulary checksum, pinned in the manifest when the bundle is built.

The manifest's file table proves only that `tokenizer.json` is the file the manifest lists.
Someone who edits the tokenizer and re-lists it (two vocabulary ids swapped, truncation switched
to the left, a normalizer changed) gets a bundle whose every digest matches. The manifest's
`tokenizer_pins`, written by train from the tokenizer it trained with, say what the tokenizer
must be: a re-listed file that changed anything the model depends on is refused
(`policy_mismatch`). A signature (intakegate.bundle.signing) is what stops someone who also rewrites
the pins; the truncation direction is also checked against the input policy, pins or not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PIN_FIELDS = ("format", "model_type", "vocab_size", "vocab_sha256", "added_tokens_sha256",
              "normalizer_sha256", "pre_tokenizer_sha256", "post_processor_sha256",
              "truncation", "padding")
PINS_FORMAT = 1
# Optional: the sha256 of the exact tokenizer.json bytes the pins were computed from (train and
# pack write it). A load whose verified file has that digest skips parsing and digesting it.
SOURCE_FIELD = "source_sha256"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode("utf-8")).hexdigest()


def _vocab(model: dict[str, Any]) -> Any:
    """Every token-to-id fact of the model: the vocab (as sorted pairs) and any merges."""
    vocab = model.get("vocab")
    pairs = sorted(vocab.items()) if isinstance(vocab, dict) else vocab
    return {"vocab": pairs, "merges": model.get("merges"), "unk_token": model.get("unk_token"),
            "continuing_subword_prefix": model.get("continuing_subword_prefix"),
            "max_input_chars_per_word": model.get("max_input_chars_per_word")}


def parsed_tokenizer(tokenizer_json: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """tokenizer.json as an object; an already parsed one passes through (a load parses the
    711 kB file once, not once per check: about 30 ms each on a 2-core CPU)."""
    if isinstance(tokenizer_json, Mapping):
        return tokenizer_json
    obj = json.loads(tokenizer_json)
    if not isinstance(obj, Mapping):
        raise ValueError("tokenizer.json is not a JSON object")
    return obj


def tokenizer_pins(tokenizer_json: str | Mapping[str, Any], source: bytes | None = None
                   ) -> dict[str, Any]:
    """The pins of a tokenizer.json (what train writes into the manifest); `source`, the file's
    bytes, adds their digest (`source_sha256`)."""
    obj = parsed_tokenizer(tokenizer_json)
    model = obj.get("model") or {}
    vocab = model.get("vocab")
    added = obj.get("added_tokens") or []
    size = len(vocab) if isinstance(vocab, (dict, list)) else 0
    size += sum(1 for t in added if isinstance(t, dict) and isinstance(vocab, dict)
                and t.get("content") not in vocab)
    return {"format": PINS_FORMAT, "model_type": model.get("type"), "vocab_size": size,
            "vocab_sha256": _digest(_vocab(model)), "added_tokens_sha256": _digest(added),
            "normalizer_sha256": _digest(obj.get("normalizer")),
            "pre_tokenizer_sha256": _digest(obj.get("pre_tokenizer")),
            "post_processor_sha256": _digest(obj.get("post_processor")),
            "truncation": obj.get("truncation"), "padding": obj.get("padding"),
            **({SOURCE_FIELD: hashlib.sha256(source).hexdigest()} if source is not None else {})}


def _malformed(pins: Mapping[str, Any]) -> bool:
    return pins.get("format") != PINS_FORMAT or not (
        set(PIN_FIELDS) <= set(pins) <= {*PIN_FIELDS, SOURCE_FIELD})


def truncation_problem(settings: Mapping[str, Any]) -> str | None:
    """The input policy windows from the right, whatever the pins say."""
    truncation = settings.get("truncation") or {}
    if not isinstance(truncation, Mapping):
        return "tokenizer.json truncation is not an object"
    if truncation.get("direction", "Right") != "Right":
        return (f"tokenizer.json truncates from the {truncation.get('direction')}; the input "
                f"policy windows from the right")
    return None


def check_tokenizer(tokenizer_json: str | Mapping[str, Any], pins: object) -> str | None:
    """A mismatch description, or None when the tokenizer is the one the manifest pins.

    Missing pins are a mismatch: every bundle this version builds carries them.
    """
    try:
        obj = parsed_tokenizer(tokenizer_json)
        problem = truncation_problem(obj)
        if problem:
            return problem
        actual = tokenizer_pins(obj)
    except (ValueError, AttributeError, TypeError) as exc:
        return f"tokenizer.json unreadable ({type(exc).__name__})"
    if not isinstance(pins, Mapping):
        return ("the manifest pins no tokenizer settings (tokenizer_pins); rebuild the bundle "
                "with this intakegate")
    if _malformed(pins):
        return "manifest tokenizer_pins are malformed"
    for field in PIN_FIELDS:
        if actual[field] != pins[field]:
            return f"tokenizer.json {field} differs from the manifest's tokenizer_pins"
    return None


def checked_settings(tokenizer_json: str, file_sha256: str, pins: object
                     ) -> tuple[Mapping[str, Any], str | None]:
    """The tokenizer's settings (`truncation`, `padding`) and a pin mismatch, or None.

    Why: parsing and digesting the 711 kB tokenizer.json costs about 0.15 s of every cold start.
    When the pins name this very file (`source_sha256` equals the digest the bundle verified),
    every pin holds by construction, so the settings are read from the pins, which are the
    file's. Anything else (no such field, another digest) is parsed and compared pin by pin. A
    publisher who rewrites the pins can do so either way; a signature is what stops that.
    """
    if isinstance(pins, Mapping) and not _malformed(pins) and pins.get(SOURCE_FIELD) == \
            file_sha256:
        return pins, truncation_problem(pins)
    parsed = parsed_tokenizer(tokenizer_json)
    return parsed, check_tokenizer(parsed, pins)


def pinned_to_source(pins: object, data: bytes) -> dict[str, Any]:
    """The pins with `source_sha256` of `data`, after checking `data` against them in full
    (what a pack writes); ValueError names the mismatch."""
    problem = check_tokenizer(data.decode("utf-8"), pins)
    if problem or not isinstance(pins, Mapping):
        raise ValueError(problem or "no tokenizer_pins")
    return {**pins, SOURCE_FIELD: hashlib.sha256(data).hexdigest()}
