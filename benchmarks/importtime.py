"""What a new process imports before its first decision, and what each import costs.

    python -m intakegate.benchmarks.importtime [--bundle B] [--runs 5] [--top 20] [--out F.json]

Each scenario runs in `runs` fresh interpreters: once plainly, timing the scenario's own code
from inside the child (`seconds`) and the whole process from spawn to exit (`process_s`), and
once under `python -X importtime`, whose per-module self and cumulative microseconds are
medians over the runs. Scenarios: `import intakegate.runtime`, `from intakegate.runtime import
Router`, and with `--bundle` a router load plus one routed ticket, and `intakegate route` (the
CLI path). The JSON on stdout (or `--out`) is what a cold-start change is judged by.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

TICKET = "FastShip delivered after the return window closed. Please allow an exception."
TIMED = ("import sys, time\nT0 = time.perf_counter()\n{code}\n"
         "sys.stderr.write('intakegate-seconds %r\\n' % (time.perf_counter() - T0))\n")


@dataclass(frozen=True)
class ImportEntry:
    """One module under `-X importtime`: medians over the runs, in milliseconds."""

    module: str
    self_ms: float
    cumulative_ms: float


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario: medians over fresh processes, and the modules that cost the most."""

    name: str
    code: str
    runs: int
    seconds_median: float
    seconds_all: tuple[float, ...]
    process_s_median: float
    modules_imported: int
    top_cumulative: tuple[ImportEntry, ...]
    top_self: tuple[ImportEntry, ...]


def scenarios(bundle: Path | None, artifact: str) -> dict[str, str]:
    """Scenario name -> the Python code a fresh process runs (`-c`)."""
    out = {"import_runtime": "import intakegate.runtime",
           "import_router": "from intakegate.runtime import Router"}
    if bundle is not None:
        out["route_one_ticket"] = (
            "from intakegate.runtime import Router\n"
            f"router = Router.load({str(bundle)!r}, artifact={artifact!r}, device='cpu')\n"
            f"assert router.ready, router.health()\nrouter.route({TICKET!r})")
        out["cli_route"] = (
            "from intakegate.cli import main\n"
            "try:\n"
            f"    main(['route', {str(bundle)!r}, {TICKET!r}, '--artifact', {artifact!r}, "
            "'--device', 'cpu'])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code")
    return out


def parse_importtime(stderr: str) -> dict[str, tuple[int, int]]:
    """`import time: self | cumulative | name` lines -> {module: (self_us, cumulative_us)}."""
    out: dict[str, tuple[int, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3:
            continue
        out[fields[2].strip()] = (int(fields[0]), int(fields[1]))
    return out


def _child(code: str, importtime: bool) -> tuple[float, float, str]:
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c",
            TIMED.format(code=code)]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"scenario failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("intakegate-seconds ")]
    return float(marker[-1].split()[1]), process_s, proc.stderr


def measure(name: str, code: str, runs: int, top: int) -> ScenarioResult:
    """Plain runs for the times, then `-X importtime` runs for the per-module medians."""
    plain = [_child(code, False) for _ in range(runs)]
    per_module: dict[str, list[tuple[int, int]]] = defaultdict(list)
    counts = []
    for _ in range(runs):
        table = parse_importtime(_child(code, True)[2])
        counts.append(len(table))
        for module, cost in table.items():
            per_module[module].append(cost)
    entries = [ImportEntry(m, round(statistics.median(c[0] for c in v) / 1000, 2),
                           round(statistics.median(c[1] for c in v) / 1000, 2))
               for m, v in per_module.items()]
    seconds = tuple(round(s, 4) for s, _, _ in plain)
    return ScenarioResult(
        name, code, runs, round(statistics.median(seconds), 4), seconds,
        round(statistics.median(p for _, p, _ in plain), 4), int(statistics.median(counts)),
        tuple(sorted(entries, key=lambda e: -e.cumulative_ms)[:top]),
        tuple(sorted(entries, key=lambda e: -e.self_ms)[:top]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m intakegate.benchmarks.importtime",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="A bundle directory to load and route.")
    parser.add_argument("--artifact", default="onnx-int8")
    parser.add_argument("--runs", type=int, default=5, help="Fresh processes per scenario.")
    parser.add_argument("--top", type=int, default=20, help="Modules listed per ranking.")
    parser.add_argument("--out", type=Path, help="Write the JSON here (default: stdout).")
    args = parser.parse_args(argv)
    results = [measure(name, code, args.runs, args.top)
               for name, code in scenarios(args.bundle, args.artifact).items()]
    text = json.dumps({"python": sys.version.split()[0], "executable": sys.executable,
                       "scenarios": [asdict(r) for r in results]}, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    for r in results:
        sys.stderr.write(f"{r.name}: median {r.seconds_median:.4f} s in-process, "
                         f"{r.process_s_median:.4f} s spawn to exit, {r.modules_imported} "
                         f"modules\n")


if __name__ == "__main__":
    main()
