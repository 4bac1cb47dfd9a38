"""A fine-tuned teacher bundle for training a smaller student: soft targets and a start.

Why: a student with fewer layers costs proportionally less per ticket, and matching the
teacher's logits (not only the hard labels) passes on what the teacher learned about
borderline tickets. The teacher is read once from a verified bundle (its gated torch-fp32
bytes, no code run), scores exactly the rows and truncation the student trains on, and its
manifest digest is recorded with the student.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from intakegate.bundle import Artifact, BundleError, verify_bundle
from intakegate.errors import InputError
from intakegate.scoring.tokenizer_pins import tokenizer_pins

STUDENT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "vocab.txt")


@dataclass(frozen=True)
class Teacher:
    """A verified teacher bundle's reference model, loaded once for the whole train run."""

    path: str
    bundle_version: str
    manifest_sha256: str
    labels: tuple[str, ...]
    vocab_sha256: str | None
    model: Any

    @classmethod
    def load(cls, path: str) -> Teacher:
        from intakegate.runtime.torch_backend import load_torch_model_from_files

        try:
            verified = verify_bundle(Path(path))
        except BundleError as exc:
            raise InputError(f"teacher bundle: {exc}", path=path) from None
        m = verified.manifest
        entry = m.artifacts.get(Artifact.TORCH_FP32.value)
        if entry is None:
            raise InputError("the teacher bundle has no torch-fp32 model", path=path)
        model = load_torch_model_from_files(verified.read_tree(entry.path)).eval()
        return cls(path, m.bundle_version, verified.manifest_sha256, tuple(m.score_head.labels),
                   (m.tokenizer_pins or {}).get("vocab_sha256"), model)

    def targets(self, tokenizer: Any, texts: Sequence[str], labels: Sequence[str],
                max_length: int, batch_size: int = 32) -> np.ndarray:
        """The teacher's logits on `texts` (prepared, as the student sees them), row order kept.

        The teacher must share the student's labels and tokenizer vocabulary: logits over other
        labels, or of other token ids, are not targets for this student."""
        from intakegate.train.hf import _features

        if self.labels != tuple(labels):
            raise InputError(f"the teacher's labels {list(self.labels)} are not the student's "
                             f"{list(labels)}", path=self.path)
        if self.vocab_sha256 != tokenizer_pins(tokenizer.to_str())["vocab_sha256"]:
            raise InputError("the teacher's tokenizer vocabulary differs from the student's",
                             path=self.path)
        features = _features(tokenizer, texts, None, max_length)
        out = []
        with torch.inference_mode():
            for i in range(0, len(features), batch_size):
                chunk = features[i:i + batch_size]
                width = max(len(f["input_ids"]) for f in chunk)
                batch = {key: torch.tensor([f[key] + [0] * (width - len(f[key])) for f in chunk])
                         for key in ("input_ids", "attention_mask", "token_type_ids")}
                out.append(self.model(**batch).logits.float().numpy())
        return np.concatenate(out)

    def student(self, layers: Sequence[int], tokenizer_dir: str, parent: Path) -> Path:
        """A Hugging Face model directory (`<teacher version>-layers-1-3-5` under `parent`)
        holding a copy of the teacher's model (embeddings, pooler and head included) with only
        `layers` of its encoder, in order, and the tokenizer files of `tokenizer_dir` (the base
        encoder's), for `fine_tune` to start from."""
        model = copy.deepcopy(self.model)  # the teacher keeps all its layers for `targets`
        encoder = getattr(getattr(model, "base_model", None), "encoder", None)
        blocks = getattr(encoder, "layer", None)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise InputError("the teacher's model has no encoder layers to keep (student_layers "
                             "needs a BERT-like Hugging Face model)", path=self.path)
        if not layers or max(layers) >= len(blocks):
            raise InputError(f"student_layers {list(layers)}: the teacher has {len(blocks)} "
                             f"layers (0..{len(blocks) - 1})", path=self.path)
        encoder.layer = torch.nn.ModuleList(blocks[i] for i in layers)
        model.config.num_hidden_layers = len(layers)
        out = parent / f"{self.bundle_version}-layers-{'-'.join(str(i) for i in layers)}"
        out.mkdir(parents=True, exist_ok=False)
        model.save_pretrained(str(out), safe_serialization=True)
        for name in STUDENT_TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).exists():
                shutil.copy(Path(tokenizer_dir) / name, out / name)
        return out
