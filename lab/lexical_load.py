"""How long a router's load spends reading the blend's lexical model, format v1 (one JSON
document) against v2 (header + terms text + float64 .npy), for one bundle's model.

    .venv/bin/python lab/lexical_load.py bundles/banking77/b77-minilm-v5 9

Both formats are written from the bundle's verified model into a temporary folder; each fresh
process imports intakegate.scoring.lexical first and times only `LexicalModel.read` (what the
cold-start span `lexical_model` measures). Alternated; prints one JSON line per format with the
median seconds, and checks that both give the same scores to the bit.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from intakegate.bundle import verify_bundle
from intakegate.bundle.paths import LEXICAL
from intakegate.scoring.lexical import LEXICAL_FORMAT_V1, LexicalModel

CHILD = """
import sys, time
from pathlib import Path
from intakegate.scoring.lexical import LexicalModel
root = Path(sys.argv[1])
start = time.perf_counter()
LexicalModel.read("lexical.json", lambda rel: (root / rel).read_bytes())
print(time.perf_counter() - start)
"""
PROBE = ["I think someone stole my card and used it", "How do I top up by bank transfer?"]


def write_formats(model: LexicalModel, work: Path) -> dict[str, Path]:
    v1, v2 = work / "v1", work / "v2"
    v1.mkdir()
    v2.mkdir()
    doc = {"format": LEXICAL_FORMAT_V1, **model.settings_json(), "terms": list(model.terms),
           "idf": model.idf.tolist(), "coef": model.coef.tolist()}
    (v1 / LEXICAL).write_text(json.dumps(doc), encoding="utf-8")
    for rel, data in model.to_files().items():
        (v2 / rel).write_bytes(data)
    return {"v1-json": v1, "v2-npy": v2}


def main(bundle: str, runs: str) -> None:
    verified = verify_bundle(Path(bundle))
    if verified.manifest.score_blend is None:
        raise SystemExit(f"{bundle} has no score blend")
    model = LexicalModel.read(verified.manifest.score_blend.lexical, verified.read)
    with tempfile.TemporaryDirectory() as work:
        folders = write_formats(model, Path(work))
        for name, folder in folders.items():
            again = LexicalModel.read(LEXICAL, lambda rel, f=folder: (f / rel).read_bytes())
            if again.scores(PROBE).tolist() != model.scores(PROBE).tolist():
                raise SystemExit(f"{name} does not reproduce the bundle's scores")
        seconds: dict[str, list[float]] = {name: [] for name in folders}
        for _ in range(int(runs)):
            for name, folder in folders.items():
                done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], check=True,
                                      capture_output=True, text=True)
                seconds[name].append(float(done.stdout.strip()))
        for name, values in seconds.items():
            size = sum(p.stat().st_size for p in folders[name].iterdir())
            print(json.dumps({"bundle": verified.bundle_version, "format": name,
                              "terms": len(model.terms), "bytes": size, "runs": len(values),
                              "median_read_s": round(statistics.median(values), 4)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
