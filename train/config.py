"""The training configuration: everything needed to reproduce a model, saved with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from intakegate.receipt.composed import GENERATOR, GENERATOR_JOINERS
from intakegate.receipt.shapes import SHAPE_GENERATORS

OBJECTIVES = ("binary", "intents")
# How a training batch is padded (Hugging Face path): `longest_in_batch` pads every row to the
# batch's longest (every shipped bundle was trained so); `length_chunks` runs the batch's rows
# in chunks of similar length (train.hf.length_chunks): the same loss over the same rows with
# far fewer pad tokens, but other dropout draws, so the same seed trains other weights.
BATCH_PADDINGS = ("longest_in_batch", "length_chunks")
# What a training row's label is weighed against (Hugging Face path, binary objective):
# `per_row`, the row's own logits (every shipped bundle was trained so); `max_over_segments`,
# a multiple-instance objective: the logits of the row's riskiest segment among the whole row
# and its parts cut by `bag_segmentation`, the way a ticket is scored. Every part of a routine
# row is pushed down in turn (whichever is riskiest) and the riskiest part of a risky row up.
SEGMENT_OBJECTIVES = ("per_row", "max_over_segments")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters. `objective=intents` trains one label per slice and derives the route."""

    base_model: str = "minilm"
    epochs: float = 4.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    train_max_length: int = 128
    seed: int = 13
    objective: str = "binary"
    label_smoothing: float = 0.0
    class_weighting: str = "balanced"
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    device: str = "cpu"
    tiny_dim: int = 64
    tiny_vocab_size: int = 4000
    # Log-odds the threshold sits below the lowest required validation positive, so exported
    # and quantized artifacts re-pass the receipt on more than numerical luck.
    threshold_margin: float = 0.25
    # Encoder weights to try for a log-odds blend with a TF-IDF + LR model fitted on train rows
    # (intakegate.scoring.lexical); the validation gate picks one. Empty: the encoder's score alone.
    blend_weights: tuple[float, ...] = ()
    # Segmentations to try (scoring.segments.SegmentPolicy.from_name); validation picks one.
    segmentations: tuple[str, ...] = ("whole", "sent2", "sent2+win8/4", "sent2+win12/6")
    # Composed training rows (routine + risky, routine + routine, from train rows only) as a
    # share of the train rows; each share trains a model and validation picks one.
    composed_shares: tuple[float, ...] = (0.0, 0.5)
    # Parts of routine train tickets (cut by `augment_segmentation`) added as routine rows, as a
    # share of the train rows; tried with every composed share, validation picks.
    segment_shares: tuple[float, ...] = (0.0,)
    # The composed-fixture generator of the receipt and of composed train rows
    # (intakegate.receipt.composed.GENERATOR_JOINERS): v2 adds the chat join.
    composed_generator: str = GENERATOR
    # Shape fixtures in the receipt and the test report (intakegate.receipt.shapes): "" for none,
    # or a generator version; `shape_composed_share` of the composed fixtures get a chat copy.
    shape_generator: str = ""
    shape_composed_share: float = 1.0
    # Shape copies (chat, e-mail, thread) of train rows, composed train rows included, as a
    # share of the train rows; each share trains a model and validation picks one.
    shape_shares: tuple[float, ...] = (0.0,)
    augment_segmentation: str = "sent2+win8/4"
    # Distillation: `teacher` is a bundle whose torch-fp32 logits on every training row are soft
    # targets (loss: (1 - distill_weight) * cross-entropy + distill_weight * T^2 * KL at
    # temperature T = distill_temperature); `student_layers` (e.g. 1,3,5) starts the student
    # from those encoder layers of the teacher instead of from `base_model`. "" = no teacher.
    teacher: str = ""
    student_layers: tuple[int, ...] = ()
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    batch_padding: str = "longest_in_batch"
    segment_objective: str = "per_row"
    bag_segmentation: str = "sent2"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blend_weights",
                           tuple(float(w) for w in (self.blend_weights or ())))
        object.__setattr__(self, "segmentations", tuple(str(s) for s in self.segmentations))
        object.__setattr__(self, "composed_shares",
                           tuple(float(x) for x in self.composed_shares))
        object.__setattr__(self, "segment_shares",
                           tuple(float(x) for x in self.segment_shares))
        object.__setattr__(self, "shape_shares", tuple(float(x) for x in self.shape_shares))
        object.__setattr__(self, "student_layers", tuple(int(i) for i in self.student_layers))
        if not self.segmentations or not self.composed_shares:
            raise ValueError("segmentations and composed_shares need at least one candidate")
        if any(not 0.0 <= x <= 4.0 for x in (*self.composed_shares, *self.segment_shares,
                                               *self.shape_shares)) or not self.shape_shares:
            raise ValueError("composed_shares, segment_shares and shape_shares must be in "
                             "[0, 4] (shape_shares: at least one)")
        from intakegate.scoring.segments import SegmentPolicy

        for name in (*self.segmentations, self.augment_segmentation, self.bag_segmentation):
            SegmentPolicy.from_name(name, "")
        if any(not 0.0 < w <= 1.0 for w in self.blend_weights):
            raise ValueError("blend_weights are encoder weights in (0, 1]; include 1.0 to let "
                             "the encoder alone compete")
        if self.composed_generator not in GENERATOR_JOINERS:
            raise ValueError(f"composed_generator must be one of {sorted(GENERATOR_JOINERS)}, "
                             f"got {self.composed_generator!r}")
        if self.shape_generator and self.shape_generator not in SHAPE_GENERATORS:
            raise ValueError(f"shape_generator must be one of {sorted(SHAPE_GENERATORS)} or "
                             f"empty, got {self.shape_generator!r}")
        if not 0.0 <= self.shape_composed_share <= 1.0:
            raise ValueError("shape_composed_share must be in [0, 1]")
        if self.batch_padding not in BATCH_PADDINGS:
            raise ValueError(f"batch_padding must be one of {BATCH_PADDINGS}, "
                             f"got {self.batch_padding!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        self._check_segment_objective()
        if self.class_weighting not in ("none", "balanced"):
            raise ValueError("class_weighting must be 'none' or 'balanced'")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if not 0.0 <= self.threshold_margin <= 3.0:
            raise ValueError("threshold_margin (log-odds) must be in [0, 3]")
        if self.epochs <= 0 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("epochs, learning_rate and batch_size must be positive")
        if self.student_layers and not self.teacher:
            raise ValueError("student_layers takes the layers of a teacher: set teacher too")
        if self.teacher and self.base_model == "tiny":
            raise ValueError("distillation trains a Hugging Face student, not the tiny encoder")
        if list(self.student_layers) != sorted(set(self.student_layers)) or any(
                i < 0 for i in self.student_layers):
            raise ValueError("student_layers must be increasing layer indices, e.g. 1,3,5")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise ValueError("distill_weight must be in [0, 1] and distill_temperature > 0")

    def _check_segment_objective(self) -> None:
        if self.segment_objective not in SEGMENT_OBJECTIVES:
            raise ValueError(f"segment_objective must be one of {SEGMENT_OBJECTIVES}, "
                             f"got {self.segment_objective!r}")
        if self.segment_objective == "per_row":
            return
        if self.objective != "binary":
            raise ValueError("segment_objective max_over_segments needs objective binary: "
                             "the riskiest segment is the one with the highest risk log-odds")
        if self.base_model == "tiny" or self.teacher:
            raise ValueError("segment_objective max_over_segments trains a Hugging Face "
                             "encoder without a teacher (not base_model tiny, not teacher)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, overrides: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
