"""Training batches run in chunks of similar length (`batch_padding: length_chunks`): the same
loss and the same gradient as the batch padded to its longest row, with fewer pad tokens."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from intakegate.train.config import TrainConfig
from intakegate.train.hf import chunked_logits, length_chunks

TEXTS = ["Where is my parcel?",
         ("Hello team, my account e-mail changed overnight and I did not change it. A new card "
          "was added too. Please lock everything before more orders go out. Thanks, Dana"),
         "refund please",
         "The blender arrived cracked. Can I send it back for a replacement or a refund?",
         "ok", "Can you update my delivery address to the office on Main Street?"]


def test_every_row_lands_in_exactly_one_chunk_of_neighbouring_lengths() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(3, 128) for _ in range(16)]
    chunks = length_chunks(lengths)
    assert sorted(i for c in chunks for i in c) == list(range(16))
    spans = [(min(lengths[i] for i in c), max(lengths[i] for i in c)) for c in chunks]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # shortest first, no overlap


def test_the_chunk_cost_trades_padding_against_runs() -> None:
    lengths = [5, 5, 6, 60, 61, 128]
    assert length_chunks(lengths, chunk_cost=10 ** 6) == [[0, 1, 2, 3, 4, 5]]
    assert len(length_chunks(lengths, chunk_cost=0)) >= 4
    assert [len(c) for c in length_chunks(lengths, chunk_cost=20)] == [3, 2, 1]


def test_chunked_loss_and_gradient_match_the_padded_batch(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    batch = dict(tok(TEXTS, padding=True, return_tensors="pt"))
    labels = torch.tensor([0, 1, 0, 1, 0, 0])
    grads = []
    for chunked in (False, True):
        model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir))
        model.eval()  # no dropout: both runs must see the same network
        logits = (chunked_logits(model, dict(batch)) if chunked
                  else model(**batch).logits)
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([1.0, 3.0]))
        loss.backward()
        grads.append((logits.detach(), loss.item(),
                      [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (padded, padded_loss, padded_grad), (chunk, chunk_loss, chunk_grad) = grads
    torch.testing.assert_close(chunk, padded, atol=1e-5, rtol=1e-5)
    assert chunk_loss == pytest.approx(padded_loss, rel=1e-5)
    assert len(chunk_grad) == len(padded_grad)
    for a, b in zip(chunk_grad, padded_grad):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_an_unknown_batch_padding_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_padding"):
        TrainConfig(batch_padding="bucketed")
