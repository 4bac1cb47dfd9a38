"""Seconds a training step takes with each `batch_padding`, on a dataset's real training rows.

Builds the dataset's training rows as `intakegate train` does (train rows, composed rows,
routine parts, shape copies at the recipe's first shares), tokenizes them with the base
model's tokenizer, draws STEPS batches of the recipe's batch size in a fixed random order, and
runs each batch twice through MiniLM (forward, backward, AdamW step), padded to its longest row
and in `length_chunks`, alternating which goes first. Prints one JSON line: the machine, the
token counts each way and the seconds a step.

    .venv/bin/python lab/train_padding.py [DATASET=refund-intake@v2] [STEPS=40]
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from intakegate.benchmarks.machine import cpu_model
from intakegate.hardware import detect_cpu_family
from intakegate.receipt.composed import (
    GENERATOR_JOINERS,
    composed_training_rows,
    routine_segment_rows,
)
from intakegate.receipt.shapes import ShapeRecipe, shape_training_rows
from intakegate.scoring.segments import SegmentPolicy, current_policy
from intakegate.train import pipeline
from intakegate.train.hf import chunked_logits, length_chunks, resolve_base_model


def training_texts(dataset: str) -> tuple[list[str], int, str]:
    """The training texts at the recipe's first shares, its batch size and base model."""
    setup = pipeline._set_up(dataset, None, None, Path(tempfile.mkdtemp()), "lab-padding",
                             {}, True)
    cfg = setup.cfg
    composed = composed_training_rows(setup.train_rows, cfg.composed_shares[0],
                                               cfg.seed, GENERATOR_JOINERS[cfg.composed_generator])
    shaped = shape_training_rows([*setup.train_rows, *composed], cfg.shape_shares[0],
                                          setup.shapes or ShapeRecipe(seed=cfg.seed))
    augment = SegmentPolicy.from_name(cfg.augment_segmentation,
                                      current_policy().segmenter_version)
    parts = routine_segment_rows(setup.train_rows, augment, cfg.segment_shares[0],
                                          cfg.seed, [*composed, *shaped])
    rows = [*setup.train_rows, *composed, *parts, *shaped]
    return pipeline._prepared(rows, setup.policy), cfg.batch_size, cfg.base_model


def main(dataset: str = "refund-intake@v2", steps: int = 40) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, batch_size, base = training_texts(dataset)
    path = resolve_base_model(base)[0]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    order = np.random.default_rng(13).permutation(len(texts))
    batches = [[texts[i] for i in order[k * batch_size:(k + 1) * batch_size]]
               for k in range(steps)]
    seconds = {"longest_in_batch": 0.0, "length_chunks": 0.0}
    tokens = {"longest_in_batch": 0, "length_chunks": 0, "real": 0}

    def step(batch: list[str], mode: str) -> float:
        inputs = dict(tok(batch, padding=True, truncation=True, max_length=128,
                          return_tensors="pt"))
        started = time.perf_counter()
        opt.zero_grad()
        logits = (chunked_logits(model, inputs) if mode == "length_chunks"
                  else model(**inputs).logits)
        torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long)
                                          ).backward()
        opt.step()
        return time.perf_counter() - started

    step(batches[0], "longest_in_batch")  # warm-up
    for k, batch in enumerate(batches):
        modes = list(seconds) if k % 2 == 0 else list(seconds)[::-1]
        for mode in modes:
            seconds[mode] += step(batch, mode)
        lengths = [len(ids) for ids in tok(batch, truncation=True, max_length=128)["input_ids"]]
        tokens["real"] += sum(lengths)
        tokens["longest_in_batch"] += max(lengths) * len(lengths)
        tokens["length_chunks"] += sum(max(lengths[i] for i in c) * len(c)
                                       for c in length_chunks(lengths))
        print(f"step {k + 1}/{steps}", file=sys.stderr)
    print(json.dumps({
        "study": "train_padding", "dataset": dataset, "train_rows": len(texts),
        "batch_size": batch_size, "steps": steps,
        "machine": {"cpu_family": detect_cpu_family().value, "cpu_model": cpu_model(),
                    "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "tokens": tokens,
        "seconds_per_step": {m: round(s / steps, 4) for m, s in seconds.items()},
        "ratio": round(seconds["length_chunks"] / seconds["longest_in_batch"], 3)}))


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["refund-intake@v2"]),
         *(int(a) for a in sys.argv[2:3]))
