"""The seed's tiny from-scratch encoder, trained with a plain PyTorch loop.

It exists to make the mechanics visible (ids, pooled embeddings, a head, cross-entropy) and to be
the fast model the tests train in seconds. Its word-level tokenizer is built from the train split
only and shipped as `tokenizer.json`, the same file the runtime reads.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from intakegate.runtime.torch_backend import TINY_CONFIG, TinyEncoderClassifier
from intakegate.train.config import TrainConfig

log = logging.getLogger(__name__)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_word_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A BERT-normalised word-level tokenizer whose vocabulary comes from the training texts.

    The vocabulary is ordered by (-count, word) so the same texts always give the same ids; the
    library trainers break frequency ties in hash order, which made ids differ between runs.
    """
    probe = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    probe.normalizer = normalizers.BertNormalizer(lowercase=True)
    probe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = probe.normalizer.normalize_str(text)
        counts.update(word for word, _ in probe.pre_tokenizer.pre_tokenize_str(normalized))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, vocab_size - len(SPECIALS))]
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok


def training_tensors(tokenizer: Tokenizer, texts: Sequence[str], max_length: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """First window of each text at the training length (long tickets are rare in training)."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    encodings = tok.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = torch.zeros((len(encodings), width), dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for i, e in enumerate(encodings):
        ids[i, :len(e.ids)] = torch.tensor(e.ids)
        mask[i, :len(e.ids)] = torch.tensor(e.attention_mask)
    return ids, mask


def train_tiny(texts: Sequence[str], labels: Sequence[int], num_labels: int, cfg: TrainConfig,
               tokenizer: Tokenizer, class_weights: np.ndarray | None = None
               ) -> TinyEncoderClassifier:
    """Train the tiny encoder with Adam and cross-entropy; deterministic for a seed on CPU."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    ids, mask = training_tensors(tokenizer, texts, cfg.train_max_length)
    y = torch.tensor(list(labels), dtype=torch.long)
    model = TinyEncoderClassifier(tokenizer.get_vocab_size(), cfg.tiny_dim, num_labels,
                                  tokenizer.token_to_id("[PAD]"))
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                              weight_decay=cfg.weight_decay)
    epochs = max(1, int(round(cfg.epochs)))
    n = len(y)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            loss = loss_fn(model(ids[batch], mask[batch]), y[batch])
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(batch)
        if epoch == 0 or (epoch + 1) % max(1, epochs // 5) == 0 or epoch + 1 == epochs:
            log.info("tiny epoch %d/%d loss %.4f", epoch + 1, epochs, total / n)
    model.eval()
    return model


def save_tiny(model: TinyEncoderClassifier, out_dir: Path, id2label: dict[int, str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out_dir / "model.safetensors"))
    cfg = {"architecture": "tiny-mean-pool", "vocab_size": model.embedding.num_embeddings,
           "dim": model.embedding.embedding_dim, "num_labels": model.head.out_features,
           "pad_id": model.embedding.padding_idx, "id2label": {str(k): v for k, v in
                                                                id2label.items()}}
    (out_dir / TINY_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
