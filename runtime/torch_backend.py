"""The torch backend: the reference `torch-fp32` artifact on cpu, cuda or mps.

Imported only when a caller asks for torch (training, the reference gate, or the runtime's torch
backend); `import intakegate.runtime` never reaches this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from intakegate.scoring.encoding import Windows

TINY_CONFIG = "tiny_config.json"


class TinyEncoderClassifier(nn.Module):
    """The seed's from-scratch encoder: embeddings, masked mean pool, linear head."""

    def __init__(self, vocab_size: int, dim: int = 64, num_labels: int = 2,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.head = nn.Linear(dim, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        pooled = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return self.head(pooled)


def pick_device(device: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must really be there."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                           "(torch.cuda.is_available() is False)")
    if device == "mps" and not (getattr(torch.backends, "mps", None)
                                and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' requested but torch.backends.mps.is_available() is "
                           "False (needs Apple silicon and a macOS build of torch)")
    if device not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return torch.device(device)


def load_torch_model(model_dir: Path, *, tensors: dict[str, Any] | None = None) -> nn.Module:
    """Load the reference model from a directory (tiny config or a Hugging Face config)."""
    from safetensors.torch import load_file

    if (model_dir / TINY_CONFIG).exists():
        cfg = json.loads((model_dir / TINY_CONFIG).read_text())
        model = TinyEncoderClassifier(cfg["vocab_size"], cfg["dim"], cfg["num_labels"],
                                      cfg["pad_id"])
        state = tensors if tensors is not None else load_file(str(model_dir / "model.safetensors"))
        model.load_state_dict(state)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir),
                                                                   trust_remote_code=False)
    model.eval()
    return model


def load_torch_model_from_files(files: dict[str, bytes]) -> nn.Module:
    """Build the reference model from the bytes of its directory (name -> bytes).

    The runtime passes the very bytes `VerifiedBundle.read` hashed, so nothing is re-read from
    disk between verification and loading. Weights come from safetensors only (no pickle).
    """
    from safetensors.torch import load as load_safetensors

    if "model.safetensors" not in files:
        raise ValueError("the torch artifact has no model.safetensors")
    state = load_safetensors(files["model.safetensors"])
    if TINY_CONFIG in files:
        cfg = json.loads(files[TINY_CONFIG].decode("utf-8"))
        model: nn.Module = TinyEncoderClassifier(cfg["vocab_size"], cfg["dim"],
                                                 cfg["num_labels"], cfg["pad_id"])
        model.load_state_dict(state, strict=True)
    elif "config.json" in files:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        cfg = json.loads(files["config.json"].decode("utf-8"))
        from intakegate.runtime.model_files import check_torch_files

        check_torch_files(files)  # no auto_map, an allowlisted model_type: no code is run
        config = AutoConfig.for_model(**cfg)
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"weights do not match the config: missing "
                             f"{result.missing_keys[:5]}, unexpected "
                             f"{result.unexpected_keys[:5]}")
    else:
        raise ValueError("the torch artifact has neither tiny_config.json nor config.json")
    model.eval()
    return model


@contextmanager
def one_thread_per_ticket() -> Iterator[None]:
    """torch's intra-op threads at one while tickets are scored side by side, one per core
    (`score_texts(workers=...)`): a single short row gains little from a second thread, and
    two rows side by side score about a quarter faster (MiniLM-L6 rows of 10 to 50 tokens on
    two cores: 9.7 ms a row against 12.9 ms on two threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchLogits:
    """Callable: Windows -> two-class logits, computed in fp32 without gradients."""

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.takes_token_types = not isinstance(model, TinyEncoderClassifier) and (
            "token_type_ids" in getattr(model, "forward").__code__.co_varnames)

    @property
    def providers(self) -> list[str]:
        """What runs the model, in the same place ONNX sessions report their providers."""
        return [f"torch-{self.device.type}"]

    def __call__(self, w: Windows) -> np.ndarray:
        return self.logits(w)

    def logits(self, w: Windows) -> np.ndarray:
        """Two-class logits for the windows, fp32, no gradients."""
        inputs = {"input_ids": torch.from_numpy(w.input_ids).to(self.device),
                  "attention_mask": torch.from_numpy(w.attention_mask).to(self.device)}
        if self.takes_token_types:
            inputs["token_type_ids"] = torch.from_numpy(w.token_type_ids).to(self.device)
        with torch.inference_mode():
            out = self.model(**inputs)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return logits.detach().float().cpu().numpy()
