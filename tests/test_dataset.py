"""Dataset loading: bad rows are errors naming file:line and field; nothing is dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intakegate.contract.dataset import load_dataset
from intakegate.contract.label_guide import load_label_guide
from intakegate.contract.split import split_dataset
from intakegate.errors import InputError
from intakegate.vocab import Split
from tests.conftest import REPO, write_jsonl


def _row(i: int, slice_name: str, route: str, account: str = "acme", month: int = 1) -> dict:
    return {"id": f"r{i}", "text": f"ticket number {i} about {slice_name}", "gold_route": route,
            "slice": slice_name, "account": account, "month": month}


def _good_rows() -> list[dict]:
    rows = []
    i = 0
    for account, month in (("a1", 1), ("a2", 2), ("a3", 3), ("b1", 5), ("c1", 6)):
        for s in ("damaged_package_exception", "return_window_exception", "account_takeover"):
            rows.append(_row(i, s, "human_review_now", account, month))
            i += 1
        rows.append(_row(i, "routine_delivery_status", "guarded_agent", account, month))
        i += 1
    return rows


def _config(tmp_path: Path, rows: list[dict], guide: Path) -> Path:
    write_jsonl(tmp_path / "rows.jsonl", rows)
    cfg = {"name": "mini", "dataset_version": "mini-v1", "format": "jsonl", "rows": "rows.jsonl",
           "label_guide": str(guide), "receipt_version": "mini-validation-v1",
           "split": {"rule": "grouped_time", "version": "mini-split",
                     "params": {"train_through_month": 4, "validation_through_month": 5}}}
    (tmp_path / "dataset.json").write_text(json.dumps(cfg))
    return tmp_path / "dataset.json"


def test_good_dataset_loads_and_splits(tmp_path: Path, guide_path: Path) -> None:
    ds = load_dataset(_config(tmp_path, _good_rows(), guide_path))
    split = split_dataset(ds)
    assert [split.manifest["splits"][s.value]["count"] for s in Split] == [12, 4, 4]


@pytest.mark.parametrize("mutate, message, field", [
    (lambda rows: rows[3].update(id="r0"), "duplicate id 'r0'", "id"),
    (lambda rows: rows[4].update(text="   "), "empty text", "text"),
    (lambda rows: rows[5].update(gold_route="escalate"), "unknown route", "gold_route"),
    (lambda rows: rows[6].update(slice="refund_fraud"), "not in label guide", "slice"),
    (lambda rows: rows[7].pop("gold_route"), "missing", "gold_route"),
    (lambda rows: rows[8].update(gold_route="guarded_agent"), "routes to human_review_now",
     "gold_route"),
    (lambda rows: rows[9].update(month="May"), "month", "month"),
    (lambda rows: rows[9].update(colour="red"), "unknown field", "colour"),
    (lambda rows: rows[2].update(excluded_reason="boring"), "unknown exclusion reason",
     "excluded_reason"),
])
def test_bad_row_names_file_line_and_field(tmp_path: Path, guide_path: Path, mutate, message,
                                           field) -> None:
    rows = _good_rows()
    mutate(rows)
    with pytest.raises(InputError) as err:
        load_dataset(_config(tmp_path, rows, guide_path))
    text = str(err.value)
    assert "rows.jsonl:" in text and message in text and f"'{field}'" in text


def test_line_number_is_the_file_line(tmp_path: Path, guide_path: Path) -> None:
    rows = _good_rows()
    rows[6]["slice"] = "nope"
    with pytest.raises(InputError) as err:
        load_dataset(_config(tmp_path, rows, guide_path))
    assert err.value.line == 7


def test_invalid_json_line_is_named(tmp_path: Path, guide_path: Path) -> None:
    cfg = _config(tmp_path, _good_rows(), guide_path)
    with (tmp_path / "rows.jsonl").open("a") as f:
        f.write("{not json}\n")
    with pytest.raises(InputError, match=r"rows.jsonl:21: invalid JSON"):
        load_dataset(cfg)


def test_required_slice_without_rows_is_an_error(tmp_path: Path, guide_path: Path) -> None:
    rows = [r for r in _good_rows() if r["slice"] != "account_takeover"]
    with pytest.raises(InputError, match=r"required slice\(s\) \['account_takeover'\] have no rows"):
        load_dataset(_config(tmp_path, rows, guide_path))


def test_excluded_rows_are_kept_and_listed(tmp_path: Path, guide_path: Path) -> None:
    rows = _good_rows()
    rows.append({**_row(99, "routine_delivery_status", "guarded_agent"), "text": "BUY CRYPTO",
                 "excluded_reason": "spam"})
    ds = load_dataset(_config(tmp_path, rows, guide_path))
    assert [(e.id, e.reason) for e in ds.excluded] == [("r99", "spam")]
    assert "r99" not in ds.by_id()


def test_label_guide_errors_name_the_field(tmp_path: Path, guide_path: Path) -> None:
    guide = json.loads(guide_path.read_text())
    guide["slices"]["routine_account"]["route"] = "escalate"
    bad = tmp_path / "guide.json"
    bad.write_text(json.dumps(guide))
    with pytest.raises(InputError, match=r"guide.json field 'slices.routine_account.route'"):
        load_label_guide(bad)
    guide = json.loads(guide_path.read_text())
    guide["routes"]["guarded_agent"]["label"] = 1
    bad.write_text(json.dumps(guide))
    with pytest.raises(InputError, match="routes.guarded_agent.label"):
        load_label_guide(bad)
    guide = json.loads(guide_path.read_text())
    guide["slices"]["routine_account"]["required"] = True
    bad.write_text(json.dumps(guide))
    with pytest.raises(InputError, match="required slice must route to human_review_now"):
        load_label_guide(bad)


def test_split_manifest_is_deterministic_and_content_addressed(tmp_path: Path,
                                                               guide_path: Path) -> None:
    cfg = _config(tmp_path, _good_rows(), guide_path)
    first = split_dataset(load_dataset(cfg)).manifest
    first_version = load_dataset(cfg).dataset_version
    assert split_dataset(load_dataset(cfg)).manifest == first
    rows = _good_rows()
    rows[0]["text"] = "a changed ticket text"
    changed = load_dataset(_config(tmp_path, rows, guide_path))
    assert changed.dataset_version != first_version
    rows.append(_row(100, "routine_delivery_status", "guarded_agent", "b1", 5))
    grown = split_dataset(load_dataset(_config(tmp_path, rows, guide_path))).manifest
    assert grown["split_manifest_version"] != first["split_manifest_version"]


def test_shipped_refund_intake_meets_its_card() -> None:
    ds = load_dataset("refund-intake")
    split = split_dataset(ds)
    assert len(ds.rows) >= 400 and len({r.account for r in ds.rows}) >= 24
    assert len({r.month for r in ds.rows}) >= 6
    for part in ("validation", "test"):
        slices = split.manifest["splits"][part]["slices"]
        for name in ds.guide.required_slices:
            assert slices[name] >= 10, (part, name)
    accounts = [set(split.manifest["splits"][s]["accounts"]) for s in ("train", "validation",
                                                                        "test")]
    assert not (accounts[0] & accounts[1] or accounts[0] & accounts[2] or accounts[1] & accounts[2])
    assert {e.reason for e in ds.excluded} == {"spam", "internal_qa", "no_customer_text"}


def test_refund_intake_has_no_near_duplicates() -> None:
    ds = load_dataset("refund-intake")
    tokens = [(r.id, frozenset(r.text.lower().split())) for r in ds.rows]
    for i, (a, ta) in enumerate(tokens):
        for b, tb in tokens[i + 1:]:
            assert len(ta & tb) / len(ta | tb) < 0.7, (a, b)


def test_banking77_split_follows_its_documented_rule() -> None:
    ds = load_dataset("banking77")
    split = split_dataset(ds)
    counts = {s: split.manifest["splits"][s]["count"] for s in ("train", "validation", "test")}
    assert counts == {"train": 9000, "validation": 1003, "test": 3080}
    assert sum(split.manifest["splits"]["test"]["slices"][s]
               for s in ds.guide.required_slices) == 240
    assert (REPO / "data" / "banking77" / "LICENSE").exists()
    assert (REPO / "data" / "banking77" / "SOURCE.md").exists()
