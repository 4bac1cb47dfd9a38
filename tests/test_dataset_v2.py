"""refund-intake v2: a larger, shape-rich version beside v1; the `shape` field and its card."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from intakegate.contract.datacard import render_data_card
from intakegate.contract.dataset import TicketRow, load_dataset
from intakegate.contract.shapes import SHAPES, applicable_shapes
from intakegate.contract.split import split_dataset
from intakegate.errors import InputError
from intakegate.vocab import Route
from tests.conftest import REPO, write_jsonl

V2 = REPO / "data" / "refund-intake" / "v2"
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def v2():
    ds = load_dataset(V2 / "dataset.json")
    return ds, split_dataset(ds)


def _split_of(split, row_id: str) -> str:
    return split.assignment[row_id].value


def test_v2_loads_by_path_and_by_name_at_version(v2) -> None:
    ds, _ = v2
    assert ds.name == "refund-intake"
    assert ds.dataset_version.startswith("refund-intake-v2+")
    assert ds.receipt_version == "refund-intake-validation-v2"
    assert len(ds.rows) >= 1500
    assert load_dataset("refund-intake@v2").dataset_version == ds.dataset_version
    assert load_dataset(str(V2 / "dataset.json")).dataset_version == ds.dataset_version
    assert {r.shape for r in ds.rows} == set(SHAPES)


def test_v1_stays_the_default_and_loads_as_before() -> None:
    v1 = load_dataset("refund-intake")
    assert v1.dataset_version.startswith("refund-intake-v1+")
    assert len(v1.rows) + len(v1.excluded) == 520 and len(v1.rows) == 510
    assert all(r.shape is None for r in v1.rows)
    assert all("shape" not in r.to_json() for r in v1.rows)
    assert load_dataset("refund-intake@v1").dataset_version == v1.dataset_version
    card = render_data_card(v1, split_dataset(v1))
    assert "Rows per slice and shape" not in card and "no multi-message threads" in card


def test_unknown_version_names_the_shipped_ones() -> None:
    with pytest.raises(InputError, match=r"no version 'v9' of refund-intake; shipped versions: "
                                         r"\['v1', 'v2'\]"):
        load_dataset("refund-intake@v9")


def test_every_applicable_slice_shape_cell_is_in_every_split(v2) -> None:
    ds, split = v2
    cells = Counter((r.slice, r.shape, _split_of(split, r.id)) for r in ds.rows)
    for name, spec in ds.guide.slices.items():
        for shape in SHAPES:
            total = sum(cells[name, shape, s] for s in SPLITS)
            if shape not in applicable_shapes(spec.route):
                assert total == 0, (name, shape)
                continue
            assert total >= (20 if spec.required else 12), (name, shape, total)
            for s in SPLITS:
                assert cells[name, shape, s] >= 1, (name, shape, s)


def test_validation_and_test_each_hold_60_required_positives(v2) -> None:
    ds, split = v2
    for part in ("validation", "test"):
        slices = split.manifest["splits"][part]["slices"]
        assert sum(slices[s] for s in ds.guide.required_slices) >= 60, part
    counts = [split.manifest["splits"][s]["count"] for s in SPLITS]
    assert 0.55 < counts[0] / sum(counts) < 0.65  # roughly 60/20/20


def test_quoted_positives_carry_risk_in_the_quote_and_in_the_reply(v2) -> None:
    ds, split = v2
    for name in ds.guide.required_slices:
        for where in ("risk_in_quote", "risk_in_reply"):
            rows = [r for r in ds.rows if r.slice == name and r.shape == "quoted_reply"
                    and where in r.tags]
            assert len(rows) >= 10, (name, where)
            assert {_split_of(split, r.id) for r in rows} == set(SPLITS), (name, where)


def test_shapes_look_like_their_names(v2) -> None:
    ds, _ = v2
    for row in ds.rows:
        if row.shape == "chat":
            assert re.fullmatch(r"[a-z0-9 ]+", row.text), row.id
        elif row.shape == "email":
            assert row.text.count("\n\n") >= 2, row.id  # greeting, body, sign-off
        elif row.shape == "quoted_reply":
            assert "wrote:" in row.text or "-----Original Message-----" in row.text, row.id
        elif row.shape == "trap_words":
            assert re.search(r"hacked|code|damaged|window|stolen|exception", row.text.lower()), \
                row.id
        elif row.shape == "multi_request":
            assert any(t.startswith("requests_") for t in row.tags), row.id
    words = sorted(len(r.text.split()) for r in ds.rows)
    assert words[0] <= 4 and words[-1] >= 120


def test_no_duplicate_or_near_duplicate_texts(v2) -> None:
    ds, _ = v2
    texts = Counter(r.text for r in ds.rows)
    assert texts.most_common(1)[0][1] == 1
    tokens = [(r.id, frozenset(re.findall(r"[a-z0-9']+", r.text.lower()))) for r in ds.rows]
    for i, (a, ta) in enumerate(tokens):
        for b, tb in tokens[i + 1:]:
            assert len(ta & tb) / len(ta | tb) < 0.6, (a, b)


def test_v2_card_counts_slice_by_shape(v2) -> None:
    ds, split = v2
    card = render_data_card(ds, split)
    assert "## Rows per slice and shape" in card
    assert "- Nothing: every applicable cell has enough rows in every split." in card
    assert "`risk_in_quote`" in card


def test_build_script_reproduces_the_committed_files() -> None:
    spec = importlib.util.spec_from_file_location("refund_intake_v2_build", V2 / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert tuple(build.SHAPES) == SHAPES
    jsonl, accounts = build.build()
    assert jsonl == (V2 / "tickets.jsonl").read_text(encoding="utf-8")
    assert accounts == (V2 / "accounts.md").read_text(encoding="utf-8")


def test_v2_label_guide_keeps_the_contract_and_adds_ambiguous_cases() -> None:
    v1 = json.loads((REPO / "data" / "refund-intake" / "label_guide.json").read_text())
    v2 = json.loads((V2 / "label_guide.json").read_text())
    assert all(case in v2["ambiguous_cases"] for case in v1["ambiguous_cases"])
    assert len(v2["ambiguous_cases"]) > len(v1["ambiguous_cases"])
    assert v2["label_version"] != v1["label_version"]
    for key in ("dataset", "routes", "slices", "exclusion_reasons"):
        assert v2[key] == v1[key], key


def test_the_rendered_label_guide_states_every_release_limit() -> None:
    from intakegate.contract.label_guide import load_label_guide, render_label_guide_md

    md = render_label_guide_md(load_label_guide(V2 / "label_guide.json"))
    assert "routine pairs may add at most +0.05" in md
    assert "quoted-thread copies may be sent to people at most +0.05 more often" in md
    assert "(`shape_fp`)" in md and "must be at most 5%" in md


# ---------------------------------------------------------------------------------------------
# The `shape` field on any dataset


def _rows(shape_of: dict[int, str] | None = None) -> list[dict]:
    rows = []
    plan = [("a1", 1), ("a2", 2), ("b1", 5), ("c1", 6)]
    for i, (account, month) in enumerate(plan):
        for j, (s, route) in enumerate((("damaged_package_exception", "human_review_now"),
                                        ("return_window_exception", "human_review_now"),
                                        ("account_takeover", "human_review_now"),
                                        ("routine_account", "guarded_agent"))):
            n = 4 * i + j
            rows.append({"id": f"r{n}", "text": f"ticket {n} about {s}", "gold_route": route,
                         "slice": s, "account": account, "month": month})
    for n, shape in (shape_of or {}).items():
        rows[n]["shape"] = shape
    return rows


def _config(tmp_path: Path, rows: list[dict], guide: Path) -> Path:
    write_jsonl(tmp_path / "rows.jsonl", rows)
    cfg = {"name": "mini", "dataset_version": "mini-v1", "format": "jsonl", "rows": "rows.jsonl",
           "label_guide": str(guide), "receipt_version": "mini-validation-v1",
           "split": {"rule": "grouped_time", "version": "mini-split",
                     "params": {"train_through_month": 4, "validation_through_month": 5}}}
    (tmp_path / "dataset.json").write_text(json.dumps(cfg))
    return tmp_path / "dataset.json"


def test_unknown_shape_names_file_line_field_and_row(tmp_path: Path, guide_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_dataset(_config(tmp_path, _rows({5: "sms"}), guide_path))
    text = str(err.value)
    assert "rows.jsonl:6 field 'shape'" in text
    assert "row 'r5'" in text and "unknown shape 'sms'" in text and "'quoted_reply'" in text
    assert err.value.field == "shape" and err.value.line == 6


def test_shape_that_does_not_fit_the_route_is_an_error(tmp_path: Path,
                                                       guide_path: Path) -> None:
    with pytest.raises(InputError, match=r"rows.jsonl:4 field 'shape': row 'r3': shape "
                                         r"'indirect' applies only to human_review_now rows"):
        load_dataset(_config(tmp_path, _rows({3: "indirect"}), guide_path))
    with pytest.raises(InputError, match=r"field 'shape': row 'r0': shape 'trap_words'"):
        load_dataset(_config(tmp_path, _rows({0: "trap_words"}), guide_path))


def test_shape_is_optional_and_round_trips(tmp_path: Path, guide_path: Path) -> None:
    ds = load_dataset(_config(tmp_path, _rows({0: "email", 3: "angry_routine"}), guide_path))
    by_id = ds.by_id()
    assert by_id["r0"].shape == "email" and by_id["r1"].shape is None
    assert by_id["r0"].to_json()["shape"] == "email" and "shape" not in by_id["r1"].to_json()
    row = TicketRow("x", "t", Route.GUARDED_AGENT, "routine_account", shape="chat")
    assert row.to_json()["shape"] == "chat"


def test_card_lists_thin_and_missing_cells(tmp_path: Path, guide_path: Path) -> None:
    shapes = {n: "plain" for n in range(16)}
    shapes[1] = "email"  # one email row, in train only
    ds = load_dataset(_config(tmp_path, _rows(shapes), guide_path))
    card = render_data_card(ds, split_dataset(ds))
    assert "- `return_window_exception` x `email`: 1 rows, none in validation, none in test" in card
    assert "- `routine_account` x `trap_words`: 0 rows, none in train" in card
    assert "`damaged_package_exception` x `trap_words`" not in card  # does not apply


def test_accounts_md_matches_the_rows(v2) -> None:
    ds, split = v2
    months: dict[str, set[int]] = {}
    for row in ds.rows:
        months.setdefault(row.account, set()).add(row.month)
    table = {}
    for line in (V2 / "accounts.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1][:1].isdigit():
            table[cells[0]] = ({int(m) for m in cells[1].split(",")}, cells[2])
    assert len(table) >= 150 and set(table) == set(months)
    for account, (listed, part) in table.items():
        assert listed == months[account] and len(listed) <= 3, account
        assert max(listed) - min(listed) + 1 == len(listed), account  # consecutive
        assert {split.assignment[r.id].value for r in ds.rows if r.account == account} == {part}
