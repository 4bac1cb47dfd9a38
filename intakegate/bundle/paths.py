"""The one table of where things live inside a bundle, and the rule every listed path obeys.

Why: train writes these paths, export, pack and the runtime read them, and a path spelled twice
drifts. Every stage names a bundle file through this module.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from intakegate.bundle.errors import BundleError

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
TORCH_MODEL_DIR = "model/torch-fp32"
LEXICAL = "lexical.json"  # the blend's lexical model (intakegate.scoring.lexical): its header,
LEXICAL_TERMS = "lexical.terms.txt"  # its n-gram vocabulary, one term per line,
LEXICAL_WEIGHTS = "lexical.weights.npy"  # and its idf and coefficients (float64, no pickle)
# The detached signature over the manifest digest (bundle.signing); it cannot be listed in
# the manifest it signs, and it is only ever parsed as a small strict JSON signature.
SIGNATURE = "manifest.sig"
# Beside the bundles of one dataset (not inside a bundle): the active version, and its lock.
POINTER = "ACTIVE"
POINTER_LOCK = "ACTIVE.lock"
RECEIPT_SPEC = "receipt/spec.json"
RUNS_DIR = "receipt/runs"
GOLDEN = "receipt/golden.json"
# Customer text (intakegate.receipt.fixtures): the receipt's fixture texts and the benchmark rows.
FIXTURES = "receipt/fixtures.jsonl"
EVAL_ROWS = "eval/rows.json"
SPLIT_MANIFEST = "split_manifest.json"
DOCS_DIR = "docs"
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
# Code files are refused like pickles: nothing in a bundle may be importable or executable
# (a transformers `auto_map` would otherwise run a listed .py file at load).
CODE_SUFFIXES = {".py", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll", ".exe", ".sh", ".bat",
                 ".cmd", ".ps1", ".js", ".jar", ".whl", ".egg"}
FORBIDDEN_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", *CODE_SUFFIXES}
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


def run_path(artifact: str, cpu_family: str | None = None) -> str:
    """Where an artifact's own receipt run is written; a quantized artifact's receipt on one
    CPU family has a file per family, so gating a second family keeps the first one's run."""
    return f"{RUNS_DIR}/{artifact}{f'.{cpu_family}' if cpu_family else ''}.json"


def check_relpath(rel: str) -> None:
    """Manifest paths are relative POSIX paths that stay inside the bundle."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BundleError("manifest_bad_path", f"bad path {rel!r}")
    if "\\" in rel or ":" in rel or rel.startswith("/") or rel != rel.strip():
        raise BundleError("manifest_bad_path", f"path {rel!r} is not a relative POSIX path")
    parts = PurePosixPath(rel).parts
    if any(p in ("", ".", "..") for p in parts) or "//" in rel:
        raise BundleError("manifest_bad_path", f"path {rel!r} leaves or aliases the bundle")
    if any(p.split(".")[0].lower() in _RESERVED for p in parts):
        raise BundleError("manifest_bad_path", f"path {rel!r} uses a reserved name")

