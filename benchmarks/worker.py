"""One measurement in a fresh process: `python -m intakegate.benchmarks.worker JOB.json`.

The parent writes the job (what to measure and the exact tickets) to a file; the worker logs
progress to stderr and prints one JSON result line on stdout. A fresh process per artifact keeps
torch out of the ONNX measurements and gives each artifact its own memory and thread pools, the
way a desktop client would run it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("intakegate.benchmarks")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Dispatch a job dict (kind `warm`, `optimum_int8` or `soak`) in this process."""
    if job["kind"] == "warm":
        from intakegate.benchmarks.latency import WarmSettings, measure_artifact

        settings = WarmSettings(**{k: tuple(v) if k == "batch_sizes" else v
                                   for k, v in job["settings"].items()})
        return measure_artifact(job["bundle"], job["artifact"], job["device"], job["threads"],
                                job["texts"], settings, job.get("optimum"))
    if job["kind"] == "optimum_int8":
        from dataclasses import asdict

        from intakegate.benchmarks.optimum_default import build

        return asdict(build(Path(job["fp32"]), job["cpu_family"]))
    if job["kind"] == "soak":
        from intakegate.benchmarks.soak import soak

        return soak(job["bundle"], job["artifact"], job["device"], job["threads"],
                    job["texts"], job["tickets"], job["windows"], job["warmup_fraction"])
    raise ValueError(f"unknown job kind {job['kind']!r}")


def run_in_worker(job: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
    """Run a job in a fresh interpreter; its progress lines go to this process's stderr."""
    with tempfile.TemporaryDirectory(prefix="intakegate-bench-") as tmp:
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run([sys.executable, "-m", "intakegate.benchmarks.worker", str(path)],
                              stdout=subprocess.PIPE, text=True, env=env, timeout=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker for {job.get('artifact')} exited "
                           f"{proc.returncode} (its log is above)")
    return json.loads(lines[-1])


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    result = run_job(job)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
