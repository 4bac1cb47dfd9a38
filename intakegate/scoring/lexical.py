"""A TF-IDF + logistic-regression scorer in numpy, and the score blend that uses it.

Why it exists: on banking77 the fine-tuned encoder ranks tickets best overall but scores a few
required positives overconfidently low, and those few rows set the threshold. A cheap lexical
model fitted on the same train rows errs on other rows. Blending the two in log-odds lets the
validation gate pick the mix (`intakegate.train.selection`), and the blended score is the one
the receipt pins. The blend is applied per segment of a ticket (`intakegate.scoring.ticket_score`).

The model is fitted with scikit-learn at train time (`train/`), stored in the bundle without
pickle and scored here by hand, because the runtime must not depend on scikit-learn and no
pickle may ship in a bundle. Parity with scikit-learn's
`TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)` + `LogisticRegression` is a test.

Stored as three files (format v2): a small JSON header (settings, intercept, and the path and
sha256 of each part), the n-gram vocabulary as UTF-8 text, one term per line, and idf and
coefficients as one float64 `.npy` read with `allow_pickle=False`. Why: banking77's model has
24,229 terms, and parsing them as one 1.6 MB JSON document took 16 ms of its cold start,
nearly all of it in the float lists. The header's digests bind the parts to it, so the header's
own digest (in `model_version`) names the whole model. Format v1 (one JSON document) is still
read, so earlier bundles keep loading.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from intakegate.bundle.errors import BundleError
from intakegate.bundle.hashing import sha256_bytes
from intakegate.bundle.paths import LEXICAL, LEXICAL_TERMS, LEXICAL_WEIGHTS, check_relpath
from intakegate.jsonio import dumps_canonical

if TYPE_CHECKING:
    from intakegate.bundle import ScoreBlendEntry

LEXICAL_FORMAT = "intakegate-lexical-v2"  # header JSON + terms text + weights .npy
LEXICAL_FORMAT_V1 = "intakegate-lexical-v1"  # one JSON document; read, no longer written
WEIGHT_ROWS = ("idf", "coef")
# scikit-learn's default word pattern: runs of two or more word characters.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
LOGIT_CLIP = 1e-12  # keeps log-odds finite for scores of exactly 0 or 1


class LexicalFormatError(ValueError):
    """The stored lexical model is malformed; `field` names what is wrong."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class LexicalModel:
    """Word 1..n-gram TF-IDF (sublinear tf, l2 norm) and a linear logistic head."""

    terms: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    ngram_max: int = 2
    lowercase: bool = True
    token_pattern: str = TOKEN_PATTERN
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.terms)
        if self.idf.shape != (n,) or self.coef.shape != (n,):
            raise LexicalFormatError("lexical", f"{n} terms but idf {self.idf.shape} and coef "
                                                f"{self.coef.shape}")
        if not (np.isfinite(self.idf).all() and np.isfinite(self.coef).all()
                and np.isfinite(self.intercept)):
            raise LexicalFormatError("lexical", "non-finite idf, coef or intercept")
        if self.ngram_max < 1:
            raise LexicalFormatError("lexical.ngram_max", "must be >= 1")
        index = dict(zip(self.terms, range(n)))
        if len(index) != n:
            raise LexicalFormatError("lexical.terms", "duplicate terms")
        object.__setattr__(self, "index", index)

    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and tf-idf weights (l2-normalised) of one text's known n-grams."""
        doc = text.lower() if self.lowercase else text
        tokens = re.findall(self.token_pattern, doc)
        grams: list[str] = list(tokens)
        for n in range(2, self.ngram_max + 1):
            grams += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        counts = Counter(g for g in grams if g in self.index)
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        cols = np.fromiter((self.index[g] for g in counts), dtype=np.int64, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        weights = tf * self.idf[cols]
        norm = np.sqrt(np.dot(weights, weights))
        return cols, weights / norm if norm > 0 else weights

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        """The logistic head's log-odds per text."""
        out = np.empty(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            cols, weights = self._features(text)
            out[i] = float(np.dot(weights, self.coef[cols])) + self.intercept
        return out

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The positive-class probability, as scikit-learn's predict_proba[:, 1]."""
        return 1.0 / (1.0 + np.exp(-self.decision(texts)))

    def settings_json(self) -> dict[str, Any]:
        """What the scorer needs besides the arrays (both formats spell it the same way)."""
        return {"kind": "tfidf-logreg", "lowercase": self.lowercase,
                "token_pattern": self.token_pattern, "ngram_range": [1, self.ngram_max],
                "sublinear_tf": True, "norm": "l2", "intercept": self.intercept}

    def to_files(self) -> dict[str, bytes]:
        """The bundle files of format v2, by bundle path: header, terms, weights."""
        if any(not t or "\n" in t for t in self.terms):
            raise ValueError("a lexical term is empty or holds a line break; cannot store it "
                             "one per line")
        terms = "\n".join(self.terms).encode("utf-8")
        buffer = io.BytesIO()
        np.save(buffer, np.stack([self.idf, self.coef]).astype(np.float64), allow_pickle=False)
        weights = buffer.getvalue()
        header = {"format": LEXICAL_FORMAT, **self.settings_json(), "n_terms": len(self.terms),
                  "terms": {"path": LEXICAL_TERMS, "sha256": sha256_bytes(terms)},
                  "weights": {"path": LEXICAL_WEIGHTS, "sha256": sha256_bytes(weights),
                              "rows": list(WEIGHT_ROWS)}}
        return {LEXICAL: dumps_canonical(header).encode("utf-8"), LEXICAL_TERMS: terms,
                LEXICAL_WEIGHTS: weights}

    @classmethod
    def read(cls, header_path: str, read: Callable[[str], bytes]) -> LexicalModel:
        """The model from its header at `header_path`, every file read through `read(rel)`
        (a verified bundle's bytes); either format. Anything malformed: LexicalFormatError."""
        obj = _json_object(read, header_path)
        if obj.get("format") == LEXICAL_FORMAT_V1:
            return cls.from_json(obj, header_path)
        if obj.get("format") != LEXICAL_FORMAT:
            raise LexicalFormatError(f"{header_path}: format", f"expected {LEXICAL_FORMAT!r} or "
                                                               f"{LEXICAL_FORMAT_V1!r}")
        _check_settings(obj, header_path)
        try:
            n = int(obj["n_terms"])
            terms = tuple(_part(obj, "terms", read, header_path).decode("utf-8").split("\n"))
            with io.BytesIO(_part(obj, "weights", read, header_path)) as buffer:
                weights = np.load(buffer, allow_pickle=False)  # object arrays are refused
            if list(obj["weights"]["rows"]) != list(WEIGHT_ROWS):
                raise ValueError(f"weights rows must be {list(WEIGHT_ROWS)}")
            if weights.dtype != np.float64 or weights.shape != (2, n) or len(terms) != n:
                raise ValueError(f"{n} terms declared; found {len(terms)} terms and weights "
                                 f"{weights.dtype}{list(weights.shape)}")
            return cls(terms, weights[0], weights[1], float(obj["intercept"]),
                       int(obj["ngram_range"][1]), bool(obj["lowercase"]),
                       str(obj["token_pattern"]))
        except (KeyError, TypeError, ValueError, IndexError, EOFError,
                UnicodeDecodeError) as exc:
            raise LexicalFormatError(header_path, f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def files(header_path: str, read: Callable[[str], bytes]) -> tuple[str, ...]:
        """Every bundle file the model at `header_path` consists of (a pack copies them)."""
        obj = _json_object(read, header_path)
        if obj.get("format") != LEXICAL_FORMAT:
            return (header_path,)
        try:
            parts = tuple(str(obj[key]["path"]) for key in ("terms", "weights"))
            for rel in parts:
                check_relpath(rel)
        except (KeyError, TypeError, BundleError) as exc:
            raise LexicalFormatError(header_path, f"{type(exc).__name__}: {exc}") from None
        return (header_path, *parts)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = LEXICAL) -> LexicalModel:
        """A format v1 document (everything in one JSON object), as earlier bundles hold."""
        if not isinstance(obj, Mapping) or obj.get("format") != LEXICAL_FORMAT_V1:
            raise LexicalFormatError(f"{where}: format", f"expected {LEXICAL_FORMAT_V1!r}")
        _check_settings(obj, where)
        try:
            terms = tuple(str(t) for t in obj["terms"])
            return cls(terms, np.asarray(obj["idf"], dtype=np.float64),
                       np.asarray(obj["coef"], dtype=np.float64), float(obj["intercept"]),
                       int(obj["ngram_range"][1]), bool(obj["lowercase"]),
                       str(obj["token_pattern"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LexicalFormatError(where, f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def from_sklearn(cls, vectorizer: Any, logreg: Any) -> LexicalModel:
        """Copy a fitted TfidfVectorizer + binary LogisticRegression (only the settings the
        numpy scorer reproduces are accepted)."""
        params = vectorizer.get_params()
        if (params["analyzer"] != "word" or params["ngram_range"][0] != 1
                or not params["sublinear_tf"] or params["norm"] != "l2"
                or params["stop_words"] is not None or params["strip_accents"] is not None
                or params["preprocessor"] is not None or params["tokenizer"] is not None):
            raise ValueError(f"unsupported TfidfVectorizer settings: {params}")
        if logreg.coef_.shape[0] != 1:
            raise ValueError("only a binary logistic regression can be stored")
        vocab = vectorizer.vocabulary_
        terms = [""] * len(vocab)
        for term, col in vocab.items():
            terms[col] = term
        return cls(tuple(terms), np.asarray(vectorizer.idf_, dtype=np.float64),
                   np.asarray(logreg.coef_[0], dtype=np.float64), float(logreg.intercept_[0]),
                   int(params["ngram_range"][1]), bool(params["lowercase"]),
                   str(params["token_pattern"]))


def _check_settings(obj: Mapping[str, Any], where: str) -> None:
    if (obj.get("sublinear_tf") is not True or obj.get("norm") != "l2"
            or list(obj.get("ngram_range", [])[:1]) != [1]):
        raise LexicalFormatError(where, "only sublinear tf, l2 norm and 1..n-grams are "
                                        "supported")


def _json_object(read: Callable[[str], bytes], path: str) -> Mapping[str, Any]:
    try:
        obj = json.loads(read(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexicalFormatError(path, f"not JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise LexicalFormatError(path, "must be a JSON object")
    return obj


def _part(obj: Mapping[str, Any], key: str, read: Callable[[str], bytes], header: str) -> bytes:
    """A part's bytes, which must hash to the digest its header names."""
    entry = obj[key]
    path = str(entry["path"])
    try:
        check_relpath(path)
        data = read(path)
    except BundleError as exc:
        raise LexicalFormatError(f"{header}: {key}.path", str(exc)) from None
    if sha256_bytes(data) != entry["sha256"]:
        raise LexicalFormatError(f"{header}: {key}.sha256", f"{path} does not hash to the "
                                                            "digest its header names")
    return data


def log_odds(p: np.ndarray) -> np.ndarray:
    # maximum/minimum, not np.clip: the same values (NaN stays NaN) at a fifth of the
    # per-call cost on the few scores of one ticket.
    q = np.minimum(np.maximum(np.asarray(p, dtype=np.float64), LOGIT_CLIP), 1.0 - LOGIT_CLIP)
    return np.log(q) - np.log1p(-q)


def blend_scores(encoder: np.ndarray, lexical: np.ndarray, encoder_weight: float) -> np.ndarray:
    """The one blend rule: a weighted mean of the two scores in log-odds. NaN stays NaN."""
    z = encoder_weight * log_odds(encoder) + (1.0 - encoder_weight) * log_odds(lexical)
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ScoreBlend:
    """The encoder's ticket score blended with a lexical model's score of the same text."""

    lexical: LexicalModel
    encoder_weight: float

    def __post_init__(self) -> None:
        if not 0.0 < self.encoder_weight < 1.0:
            raise LexicalFormatError("score_blend.encoder_weight", "must be in (0, 1); a weight "
                                     "of 1 means no blend (omit score_blend)")



def blend_from_entry(entry: ScoreBlendEntry | None, read: Any) -> ScoreBlend | None:
    """The bundle's blend (its manifest entry, already validated), with the lexical model read
    through `read(rel) -> bytes` (verified bytes); None when the bundle has no blend."""
    if entry is None:
        return None
    return ScoreBlend(LexicalModel.read(entry.lexical, read), entry.encoder_weight)
