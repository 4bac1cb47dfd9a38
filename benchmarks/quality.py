"""Quality beside speed: each artifact's gate receipt and the bundle's test-set figures.

Read from the verified bundle (the same bytes the router trusts): the manifest's artifact entry
(status, reason, the runtime it was gated with), the drift report export wrote for it
(`docs/drift_<artifact>.json`, max |score delta| against torch-fp32 and the validation tickets
whose route flipped), and `docs/test_report.json`, the test split opened once after the
threshold was frozen. The test figures are the reference model's (torch-fp32); an exported
artifact differs from them by its drift.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from intakegate.bundle import BundleError, VerifiedBundle


def _read_json(verified: VerifiedBundle, rel: str | None) -> dict[str, Any] | None:
    if not rel:
        return None
    try:
        doc = json.loads(verified.read(rel).decode("utf-8"))
    except (BundleError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def artifact_quality(verified: VerifiedBundle, artifact: str) -> dict[str, Any]:
    """The gate receipt summary of one artifact (None fields where the bundle has no record)."""
    art = verified.manifest.artifacts.get(artifact)
    if art is None:
        return {"in_bundle": False}
    drift = art.drift
    report_rel = drift.get("report") if drift else None
    report = _read_json(verified, report_rel)
    flips = (report or drift or {}).get("route_flips") or []
    flip_ids = [f.get("id") if isinstance(f, Mapping) else f for f in flips]
    return {
        "in_bundle": True,
        "status": art.status.value,
        "reason": art.reason,
        "gated_with": art.gated_with,
        "precision": art.precision,
        # which int8 recipe the export's search shipped (none for fp32 and Core ML)
        "recipe": (art.export_settings or {}).get("recipe"),
        "size_bytes": art.size_bytes,
        "size_mb": round(art.size_bytes / 1e6, 2) if art.size_bytes else None,
        "device_classes": None if art.device_classes is None else list(art.device_classes),
        "cpu_families": art.gated_cpu_families() if art.quantized else None,
        "drift_reference": (report or drift or {}).get("reference"),
        "max_abs_score_delta": (report or drift or {}).get("max_abs_delta"),
        "route_flips": len(flip_ids) if (report or drift) else None,
        "route_flip_ids": flip_ids,
        "rows_compared": report.get("rows_compared") if report else None,
        "drift_report": report_rel,
    }


def bundle_test_figures(verified: VerifiedBundle) -> dict[str, Any]:
    """Required missed, FP rate and ROC-AUC on the test split, for the encoder and baselines."""
    documents = verified.manifest.documents or {}
    report = _read_json(verified, documents.get("test_report.json"))
    if report is None:
        return {"available": False, "note": "no docs/test_report.json (test split not opened)"}

    def pick(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(block, Mapping):
            return None
        return {"required_missed": block.get("required_missed"),
                "required_positives": block.get("required_positives"),
                "false_positive_rate": block.get("false_positive_rate"),
                "roc_auc": block.get("roc_auc"), "threshold": block.get("threshold"),
                "n": block.get("n")}

    baselines = report.get("baselines") if isinstance(report.get("baselines"), Mapping) else {}
    return {"available": True, "source": documents.get("test_report.json"),
            "scored_with": "torch-fp32 (reference)", "encoder": pick(report.get("encoder")),
            "baselines": {k: pick(v) for k, v in baselines.items()}}
