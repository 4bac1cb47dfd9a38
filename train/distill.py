"""Soft targets from a fine-tuned teacher bundle, for training a smaller student.

Why: a student with fewer layers costs proportionally less per ticket, and matching the
teacher's logits (not only the hard labels) passes on what the teacher learned about
borderline tickets. The teacher is read from a verified bundle (its gated torch-fp32 bytes,
no code run), scores exactly the rows and truncation the student trains on, and its manifest
digest is recorded with the student.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from intakegate.bundle import Artifact, BundleError, verify_bundle
from intakegate.errors import InputError
from intakegate.tokenizer_pins import tokenizer_pins


@dataclass(frozen=True)
class TeacherTargets:
    """The teacher's logits on each training row (row order kept) and where they came from."""

    logits: np.ndarray
    bundle_version: str
    manifest_sha256: str


def teacher_targets(teacher: str, tokenizer: object, texts: Sequence[str],
                    labels: Sequence[str], max_length: int, batch_size: int = 32
                    ) -> TeacherTargets:
    """Score `texts` (prepared, as the student sees them) with the teacher's torch-fp32 model.

    The teacher must share the student's labels and tokenizer vocabulary: logits over other
    labels, or of other token ids, are not targets for this student."""
    from intakegate.runtime.torch_backend import load_torch_model_from_files
    from intakegate.train.hf import _features

    try:
        verified = verify_bundle(Path(teacher))
    except BundleError as exc:
        raise InputError(f"teacher bundle: {exc}", path=teacher) from None
    m = verified.manifest
    if tuple(m.score_head.labels) != tuple(labels):
        raise InputError(f"the teacher's labels {list(m.score_head.labels)} are not the "
                         f"student's {list(labels)}", path=teacher)
    ours = tokenizer_pins(tokenizer.to_str())["vocab_sha256"]  # type: ignore[attr-defined]
    if (m.tokenizer_pins or {}).get("vocab_sha256") != ours:
        raise InputError("the teacher's tokenizer vocabulary differs from the student's",
                         path=teacher)
    entry = m.artifacts.get(Artifact.TORCH_FP32.value)
    if entry is None:
        raise InputError("the teacher bundle has no torch-fp32 model", path=teacher)
    prefix = entry.path.rstrip("/") + "/"
    files = {rel[len(prefix):]: verified.read(rel) for rel in sorted(m.listed)
             if rel.startswith(prefix)}
    model = load_torch_model_from_files(files).eval()
    features = _features(tokenizer, texts, None, max_length)  # type: ignore[arg-type]
    out = []
    with torch.inference_mode():
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size]
            width = max(len(f["input_ids"]) for f in chunk)

            def padded(key: str, chunk: list = chunk, width: int = width) -> torch.Tensor:
                return torch.tensor([f[key] + [0] * (width - len(f[key])) for f in chunk])

            out.append(model(input_ids=padded("input_ids"),
                             attention_mask=padded("attention_mask"),
                             token_type_ids=padded("token_type_ids")).logits.float().numpy())
    return TeacherTargets(np.concatenate(out), m.bundle_version, verified.manifest_sha256)


STUDENT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "vocab.txt")


def make_student(teacher: str, layers: Sequence[int], tokenizer_dir: str, parent: Path) -> Path:
    """A Hugging Face model directory (`<teacher version>-layers-1-3-5` under `parent`) holding
    the teacher's fine-tuned model (embeddings, pooler and head included) with only `layers`
    of its encoder, in order, and the tokenizer files of `tokenizer_dir` (the base encoder's),
    for `fine_tune` to start from."""
    import shutil

    from intakegate.runtime.torch_backend import load_torch_model_from_files

    verified = verify_bundle(Path(teacher))
    entry = verified.manifest.artifacts.get(Artifact.TORCH_FP32.value)
    if entry is None:
        raise InputError("the teacher bundle has no torch-fp32 model", path=teacher)
    prefix = entry.path.rstrip("/") + "/"
    model = load_torch_model_from_files({rel[len(prefix):]: verified.read(rel)
                                         for rel in sorted(verified.manifest.listed)
                                         if rel.startswith(prefix)})
    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise InputError("the teacher's model has no encoder layers to keep (student_layers "
                         "needs a BERT-like Hugging Face model)", path=teacher)
    if not layers or max(layers) >= len(blocks):
        raise InputError(f"student_layers {list(layers)}: the teacher has {len(blocks)} layers "
                         f"(0..{len(blocks) - 1})", path=teacher)
    encoder.layer = torch.nn.ModuleList(blocks[i] for i in layers)
    model.config.num_hidden_layers = len(layers)
    out = parent / f"{verified.bundle_version}-layers-{'-'.join(str(i) for i in layers)}"
    out.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(str(out), safe_serialization=True)
    for name in STUDENT_TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).exists():
            shutil.copy(Path(tokenizer_dir) / name, out / name)
    return out
