"""Refuse anything in a bundle that could make loading run code, before a library sees it.

A bundle comes from outside the desktop client. transformers will import and run Python named by
a config's `auto_map` (after an interactive `trust_remote_code` prompt that reads stdin and writes
to stdout, which would also corrupt `serve --stdio`). So the torch artifact's `config.json` is
checked here first: a plain JSON object, a `model_type` from a short allowlist of architectures
transformers implements itself, and no key that names remote code. Code files anywhere in a
bundle are refused by `intakegate.bundle` (`CODE_SUFFIXES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Architectures the train stage produces or could fine-tune; all are implemented inside
# transformers, so building them never imports a file from the bundle.
ALLOWED_MODEL_TYPES = frozenset({"bert", "distilbert", "roberta", "xlm-roberta", "electra",
                                 "mpnet", "deberta-v2", "albert"})
# Config keys that make transformers look for (or run) code outside its own package.
REMOTE_CODE_KEYS = frozenset({"auto_map", "custom_pipelines", "trust_remote_code",
                              "code_revision"})
TINY_CONFIG = "tiny_config.json"


class CodeInBundle(ValueError):
    """The torch artifact's files could run code or are not plain data; the message says why."""


def _find_remote_keys(obj: Any, path: str = "") -> str | None:
    """The first key naming remote code anywhere in the config (nested configs included)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key in REMOTE_CODE_KEYS:
                return f"{path}{key}"
            found = _find_remote_keys(value, f"{path}{key}.")
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _find_remote_keys(value, f"{path}[{i}].")
            if found:
                return found
    return None


def check_torch_files(files: Mapping[str, bytes]) -> None:
    """Raise CodeInBundle unless the torch artifact is safetensors weights plus a plain config
    that transformers (or the tiny encoder) builds without importing anything from the bundle."""
    for name in files:
        if name.endswith((".py", ".pyc", ".pyo", ".so", ".dylib", ".dll")):
            raise CodeInBundle(f"{name} is a code file")
    if TINY_CONFIG in files:  # the tiny encoder is built by our own code from four numbers
        _json_object(files[TINY_CONFIG], TINY_CONFIG)
        if "config.json" not in files:
            return
    if "config.json" not in files:
        raise CodeInBundle("the torch artifact has neither tiny_config.json nor config.json")
    cfg = _json_object(files["config.json"], "config.json")
    remote = _find_remote_keys(cfg)
    if remote:
        raise CodeInBundle(f"config.json sets {remote!r}, which makes transformers load code")
    model_type = cfg.get("model_type")
    if model_type not in ALLOWED_MODEL_TYPES:
        raise CodeInBundle(f"config.json model_type {model_type!r} is not one of "
                           f"{sorted(ALLOWED_MODEL_TYPES)}")


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    from intakegate.errors import InputError
    from intakegate.jsonio import loads_strict

    try:
        obj = loads_strict(data.decode("utf-8"), path=name)
    except (InputError, UnicodeDecodeError) as exc:
        raise CodeInBundle(f"{name} is not strict JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CodeInBundle(f"{name} is not a JSON object")
    return obj


__all__ = ["ALLOWED_MODEL_TYPES", "CodeInBundle", "check_torch_files"]
