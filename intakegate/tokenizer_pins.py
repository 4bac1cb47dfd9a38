"""Tokenizer settings and a vocabulary checksum, pinned in the manifest when the bundle is built.

The manifest's file table proves only that `tokenizer.json` is the file the manifest lists.
Someone who edits the tokenizer and re-lists it (two vocabulary ids swapped, truncation switched
to the left, a normalizer changed) gets a bundle whose every digest matches. The manifest's
`tokenizer_pins`, written by train from the tokenizer it trained with, say what the tokenizer
must be: a re-listed file that changed anything the model depends on is refused
(`policy_mismatch`). A signature (intakegate.signing) is what stops someone who also rewrites
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


def tokenizer_pins(tokenizer_json: str | Mapping[str, Any]) -> dict[str, Any]:
    """The pins of a tokenizer.json (what train writes into the manifest)."""
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
            "truncation": obj.get("truncation"), "padding": obj.get("padding")}


def check_tokenizer(tokenizer_json: str | Mapping[str, Any], pins: object) -> str | None:
    """A mismatch description, or None when the tokenizer is the one the manifest pins.

    Missing pins are a mismatch: every bundle this version builds carries them.
    """
    try:
        obj = parsed_tokenizer(tokenizer_json)
        truncation = obj.get("truncation") or {}
        if truncation.get("direction", "Right") != "Right":
            return (f"tokenizer.json truncates from the {truncation.get('direction')}; the "
                    f"input policy windows from the right")
        actual = tokenizer_pins(obj)
    except (ValueError, AttributeError, TypeError) as exc:
        return f"tokenizer.json unreadable ({type(exc).__name__})"
    if not isinstance(pins, Mapping):
        return ("the manifest pins no tokenizer settings (tokenizer_pins); rebuild the bundle "
                "with this intakegate")
    if pins.get("format") != PINS_FORMAT or set(pins) != set(PIN_FIELDS):
        return "manifest tokenizer_pins are malformed"
    for field in PIN_FIELDS:
        if actual[field] != pins[field]:
            return f"tokenizer.json {field} differs from the manifest's tokenizer_pins"
    return None
