"""The multiple-instance objective (`segment_objective: max_over_segments`): a training row's
label is weighed against its riskiest segment, the way a ticket is scored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from intakegate.train.config import TrainConfig
from intakegate.train.hf import BagCollator, riskiest_in_bags

from tests.conftest import train_tiny_bundle


def test_each_bag_takes_the_logits_of_its_riskiest_row_and_only_that_row_learns() -> None:
    logits = torch.tensor([[0.0, -1.0], [0.0, 2.0], [1.0, 0.5],  # bag 0: row 1 is riskiest
                           [3.0, 0.0], [0.0, 0.0]], requires_grad=True)  # bag 1: row 4
    bags = torch.tensor([0, 0, 0, 1, 1])
    picked = riskiest_in_bags(logits, bags, positive=1)
    assert torch.equal(picked.detach(), torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
    torch.nn.functional.cross_entropy(picked, torch.tensor([0, 1])).backward()
    assert logits.grad is not None
    assert [bool(g.abs().sum() > 0) for g in logits.grad] == [False, True, False, False, True]


def test_the_collator_pads_every_bags_rows_into_one_batch_with_one_label_a_bag(
        tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))

    def row(text: str) -> dict:
        enc = tok(text)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    bags = [{"rows": [row("Where is my parcel? Also my card was stolen."),
                      row("Where is my parcel?"), row("Also my card was stolen.")], "labels": 1},
            {"rows": [row("refund please")], "labels": 0}]
    batch = BagCollator(DataCollatorWithPadding(tok))(bags)
    assert batch["input_ids"].shape[0] == 4
    assert batch["bag_index"].tolist() == [0, 0, 0, 1]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.parametrize("settings", [{"objective": "intents"}, {"base_model": "tiny"},
                                      {"teacher": "bundles/x"},
                                      {"segment_objective": "mean_over_segments"},
                                      {"bag_segmentation": "paragraphs"}])
def test_a_setting_the_objective_cannot_train_is_refused_naming_it(settings: dict) -> None:
    with pytest.raises(ValueError, match="segment_objective|segmentation|unknown"):
        TrainConfig(**{"segment_objective": "max_over_segments", **settings})


def test_a_bundle_trains_with_the_objective_and_records_it(
        tmp_path: Path, tiny_bert_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="intakegate.train.hf")
    bundle = train_tiny_bundle(tmp_path, "bags", base_model=str(tiny_bert_dir), epochs=2,
                               segment_objective="max_over_segments", bag_segmentation="sent2",
                               batch_padding="length_chunks")
    config = json.loads((bundle / "docs/training_config.json").read_text())["config"]
    assert (config["segment_objective"], config["bag_segmentation"]) == (
        "max_over_segments", "sent2")
    bags = [r.getMessage() for r in caplog.records if "in bags of" in r.getMessage()]
    assert bags and float(bags[0].rsplit("bags of ", 1)[1].split()[0]) > 1.5
    assert (bundle / "receipt/spec.json").exists()
