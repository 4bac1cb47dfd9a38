"""A smaller student distilled from a gated teacher bundle (issue: a faster artifact).

The teacher is the session's tiny BERT bundle (2 layers); the student keeps one of its layers,
is trained against the teacher's logits beside the labels, and is gated like any bundle with its
own threshold and receipt. Plumbing only: the tiny BERT says nothing about quality.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from intakegate.errors import InputError
from tests.conftest import relaxed_guide, train_tiny_bundle

TEXTS = ["Where is my parcel?", "Someone logged into my account and changed my password."]


def test_the_teacher_scores_exactly_the_rows_the_student_trains_on(tiny_bert_bundle: Path,
                                                                   tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    from intakegate.train.distill import Teacher

    tok = Tokenizer.from_file(str(tiny_bert_bundle / "tokenizer.json"))
    labels = json.loads((tiny_bert_bundle / "manifest.json").read_text())["score_head"]["labels"]
    teacher = Teacher.load(str(tiny_bert_bundle))
    logits = teacher.targets(tok, TEXTS, labels, 128)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_bert_bundle / "model" / "torch-fp32")).eval()
    for text, row in zip(TEXTS, logits):
        enc = tok.encode(text)
        with torch.inference_mode():
            want = model(input_ids=torch.tensor([enc.ids]),
                         attention_mask=torch.tensor([enc.attention_mask]),
                         token_type_ids=torch.tensor([enc.type_ids])).logits[0].numpy()
        np.testing.assert_allclose(row, want, atol=1e-5)
    assert teacher.bundle_version == tiny_bert_bundle.name
    teacher.student((1,), str(tiny_bert_bundle), tmp_path)  # cut from a copy of the model
    np.testing.assert_array_equal(teacher.targets(tok, TEXTS, labels, 128), logits)
    with pytest.raises(InputError, match="labels"):
        teacher.targets(tok, TEXTS, ["a", "b"], 128)


def test_a_student_with_fewer_layers_is_distilled_and_gated_with_its_own_receipt(
        tiny_bert_bundle: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from intakegate.runtime import Router

    bundle = train_tiny_bundle(tmp_path, "student-t1", base_model="minilm",
                               label_guide=relaxed_guide(tmp_path, 1.0), threshold_margin=0.0,
                               teacher=str(tiny_bert_bundle), student_layers=(1,),
                               epochs=2)
    config = json.loads((bundle / "docs" / "training_config.json").read_text())
    teacher_manifest = (tiny_bert_bundle / "manifest.json").read_bytes()
    assert config["teacher"] == {"bundle_version": tiny_bert_bundle.name,
                                 "manifest_sha256": hashlib.sha256(teacher_manifest).hexdigest(),
                                 "student_layers": [1]}
    assert config["base_model_name"] == f"{tiny_bert_bundle.name}-layers-1"
    model_config = json.loads((bundle / "model" / "torch-fp32" / "config.json").read_text())
    assert model_config["num_hidden_layers"] == 1
    with safe_open(str(bundle / "model" / "torch-fp32" / "model.safetensors"), "pt") as f:
        assert not any(".layer.1." in k for k in f.keys())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["threshold"] != json.loads(
        (tiny_bert_bundle / "manifest.json").read_text())["threshold"]  # its own threshold
    router = Router.load(bundle, artifact="torch-fp32")
    assert router.ready, router.health()
    assert not (bundle.parent / f".staging-{bundle.name}").exists()


def test_student_layers_need_a_teacher_and_valid_indices(tiny_bert_bundle: Path,
                                                         tmp_path: Path) -> None:
    from intakegate.train.config import TrainConfig

    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(student_layers=(1,))
    with pytest.raises(ValueError, match="increasing"):
        TrainConfig(teacher="x", student_layers=(3, 1))
    with pytest.raises(InputError, match="has 2 layers"):
        train_tiny_bundle(tmp_path, "student-bad", base_model="minilm",
                          label_guide=relaxed_guide(tmp_path, 1.0),
                          teacher=str(tiny_bert_bundle), student_layers=(0, 5), epochs=1)


def test_the_teacher_term_reaches_the_loss(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The Trainer drops dataset keys the model's forward does not take unless told not to;
    the teacher's logits must survive to the loss, so they change what is learned."""
    from safetensors.numpy import load_file

    from intakegate.train.config import TrainConfig
    from intakegate.train.hf import fine_tune, serving_tokenizer

    tok = serving_tokenizer(str(tiny_bert_dir))
    texts = [*TEXTS] * 4
    labels = [0, 1] * 4
    soft = np.asarray([[3.0, -3.0], [-3.0, 3.0]] * 4)
    id2label = {0: "guarded_agent", 1: "human_review_now"}
    cfg = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, teacher="t",
                      distill_weight=1.0)
    weights = {}
    for name, targets in (("labels", None), ("teacher", soft), ("flipped", -soft)):
        fine_tune(str(tiny_bert_dir), tok, texts, labels, id2label, cfg, tmp_path / name,
                  soft_targets=targets)
        weights[name] = load_file(str(tmp_path / name / "model.safetensors"))["classifier.weight"]
    assert not np.allclose(weights["labels"], weights["teacher"])
    assert not np.allclose(weights["teacher"], weights["flipped"])


def test_train_takes_composed_and_segment_shares_from_the_command_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A student's recipe (more composed rows, routine parts with soft targets) is a command
    anyone can rerun, not an edited dataset recipe; a bad list is a usage error."""
    from typer.testing import CliRunner

    import intakegate.train.pipeline as pipeline
    from intakegate.cli.app import app

    seen: dict[str, object] = {}

    def fake_train(*args: object, overrides: dict[str, object], **kw: object) -> None:
        seen.update(overrides)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "train_bundle", fake_train)
    runner = CliRunner()
    runner.invoke(app, ["train", "--dataset", "banking77", "--composed-shares", "0.5,1",
                        "--segment-shares", "0.5", "--batch-padding", "length_chunks"])
    assert seen["composed_shares"] == (0.5, 1.0) and seen["segment_shares"] == (0.5,)
    assert seen["batch_padding"] == "length_chunks"
    bad = runner.invoke(app, ["train", "--dataset", "banking77", "--segment-shares", "half"])
    assert bad.exit_code != 0 and "--segment-shares" in bad.output
