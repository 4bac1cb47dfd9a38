"""Gate an int8 artifact on the CPU families this machine is not, under QEMU user-mode emulation,
and record each family's entry in the bundle with the real `intakegate gate --record`.

Why: onnxruntime dispatches int8 kernels by CPU family, so an int8 receipt holds only for the
families it was scored on, and a desktop product meets all of them. QEMU's TCG reports the
emulated CPU's features (cpuid, hwcaps) to onnxruntime and executes the kernels' integer and
IEEE float instructions exactly, so each run below scores with the kernels a real CPU of that
family would use; what it cannot show is speed. `emulation_setup.sh` prepares the emulators.

Usage: lab/emulated_cpu_families.py BUNDLE [--targets arm64/cortex-a76,...]
Writes runs/lab/emulated-cpu-families-<bundle_version>.json: per target, the features the
emulated CPU reports, the gate's decision, largest score change against torch, route flips and
wall time, and one routed ticket on each recorded family; and the largest score difference
between every two families' receipts in the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from intakegate.hardware import detect_cpu_family, gate_cpu_family

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / ".venv" / "bin" / "python"
# What the emulated CPU reports, read through numpy's cpuid/hwcap probe; the family the run is
# recorded under is then checked against it, so a mistyped CPU model cannot pass as a family.
PROBE = ("import json, platform; from numpy._core._multiarray_umath import __cpu_features__ as f;"
         "print(json.dumps({'machine': platform.machine(), "
         "'features': sorted(k for k, v in f.items() if v)}))")


@dataclass(frozen=True)
class Target:
    """One emulated CPU: the family it stands for and the QEMU model that reports it."""

    family: str
    arch: str  # x86_64 runs this checkout's .venv; aarch64 the arm64 sysroot of the setup
    qemu_cpu: str
    stands_for: str
    record: bool  # write this target's gate into the bundle (`gate --record`)

    @property
    def name(self) -> str:
        return f"{self.family}/{self.qemu_cpu}"


# In run order, fastest under emulation first: on a 2-core Xeon one refund-intake fixture took
# about 2 s as cortex-a76, 6 s as Nehalem, 16 s as neoverse-v1 and 32 s as Haswell (QEMU 10
# runs NEON and SSE far faster than SVE and AVX2), against 0.03 s natively.
TARGETS = (
    Target("arm64", "aarch64", "cortex-a76", "arm64 with dot product, no i8mm (Apple M1, AWS "
           "Graviton2, Snapdragon 8cx)", True),
    Target("x86_no_avx2", "x86_64", "Nehalem", "x86 with SSE4.2, no AVX", True),
    Target("arm64", "aarch64", "neoverse-v1", "arm64 with dot product, i8mm and SVE "
           "(AWS Graviton3)", False),
    Target("avx2", "x86_64", "Haswell", "x86 with AVX2, no AVX-512 (Intel Haswell to Alder "
           "Lake desktops, AMD Zen 1-3)", True),
)


def expected_family(machine: str, features: set[str]) -> str:
    """The family these features make, by intakegate.hardware's own rule (numpy's feature
    names, lower-cased, are the flag names it reads: `avx2`, `avx512vnni`)."""
    return detect_cpu_family(machine, {f.lower() for f in features}).value


def command(target: Target, emu: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `python args...` on the target CPU (from `/`: in the
    checkout, its source `intakegate/` would shadow the arm64 install)."""
    env = dict(os.environ)
    if target.arch == "x86_64":
        # /proc/cpuinfo under qemu-x86_64 is the host's, so the family is declared; the probe
        # checks the declaration against what cpuid reports.
        env["INTAKEGATE_CPU_FAMILY"] = target.family
        return [str(emu / "qemu/usr/bin/qemu-x86_64"), "-cpu", target.qemu_cpu,
                str(VENV_PY), *args], env
    env["PYTHONPATH"] = str(emu / "arm64site")
    env.pop("INTAKEGATE_CPU_FAMILY", None)
    python = sorted((emu / "arm64root/usr/bin").glob("python3.*"))[0]
    return [str(emu / "qemu/usr/bin/qemu-aarch64"), "-cpu", target.qemu_cpu,
            "-L", str(emu / "arm64root"), str(python), *args], env


def run_target(target: Target, emu: Path, bundle: Path, artifact: str) -> dict:
    argv, env = command(target, emu, ["-c", PROBE])
    probe = json.loads(subprocess.run(argv, env=env, capture_output=True, text=True,
                                      check=True, cwd="/").stdout)
    features = set(probe["features"])
    found = expected_family(probe["machine"], features)
    if found != target.family:
        raise SystemExit(f"{target.name}: the emulated CPU reports family {found}, not "
                         f"{target.family} (features: {sorted(features)})")
    gate_args = ["-m", "intakegate", "gate", str(bundle), "--artifact", artifact, "--json"]
    argv, env = command(target, emu, gate_args + (["--record"] if target.record else []))
    print(f"{target.name}: {' '.join(argv[:4])} ... gate{' --record' if target.record else ''}",
          flush=True)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd="/")
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{target.name}: gate exited {done.returncode}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    gate = report["gates"][0]
    print(f"  {gate['gated_with']}: {gate['decision']} ({gate['reason']}), max |delta| "
          f"{gate['max_abs_delta']}, flips {len(gate['route_flips'])}, {wall:.0f} s", flush=True)
    return {"target": asdict(target), "features": sorted(features), "gate": gate,
            "recorded_manifest_sha256": report["recorded_manifest_sha256"],
            "wall_s": round(wall, 1)}


# The routine-then-risky ticket: the router on the emulated CPU must load (binding this
# family's own receipt and golden rows) and send it to a person.
ROUTE_CHECK = ("I would like to know when my order will arrive, and what the usual delivery "
               "times are for my area. Someone logged into my account, changed my password and "
               "placed three orders I never made.")


def route_check(target: Target, emu: Path, bundle: Path, artifact: str) -> dict:
    """Route one ticket through `intakegate route` on the target CPU."""
    argv, env = command(target, emu, ["-m", "intakegate", "route", str(bundle), "--artifact",
                                      artifact, "--device", "cpu", "--json", ROUTE_CHECK])
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd="/")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    decision = json.loads(lines[-1]) if lines else None
    print(f"  route: {decision and decision.get('route')} ({decision and decision.get('reason')})"
          f", {time.monotonic() - started:.0f} s", flush=True)
    return {"exit_code": done.returncode, "decision": decision,
            "stderr_tail": None if decision else done.stderr[-2000:]}


def family_runs(bundle: Path, artifact: str) -> dict[str, dict[str, float]]:
    """Each CPU family's own recorded receipt scores, read from the bundle's manifest."""
    entry = json.loads((bundle / "manifest.json").read_text())["artifacts"][artifact]
    runs = {}
    for key, gate in entry.get("gates", {}).items():
        family = gate_cpu_family(key)
        if family and gate.get("receipt_run"):
            rows = json.loads((bundle / gate["receipt_run"]).read_text())["rows"]
            runs[family] = {r["fixture_id"]: r["score"] for r in rows if r["score"] is not None}
    return runs


def max_score_gaps(runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The largest per-fixture score difference between every two families' receipts."""
    return {a: {b: max(abs(sa[f] - sb[f]) for f in sa if f in sb)
                for b, sb in runs.items() if b != a} for a, sa in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--artifact", default="onnx-int8")
    parser.add_argument("--emu", type=Path, default=Path(os.environ.get("EMU", "/tmp/emu")))
    parser.add_argument("--targets", default=",".join(t.name for t in TARGETS),
                        help="comma-separated FAMILY/QEMU_CPU names (default: all); a full "
                             "receipt takes from 40 minutes to hours each (see TARGETS)")
    parser.add_argument("--route-only", action="store_true",
                        help="route the check ticket on the targets' CPUs without re-gating "
                             "(after an earlier run recorded them)")
    args = parser.parse_args()
    wanted = [n for n in args.targets.split(",") if n]
    known = {t.name: t for t in TARGETS}
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; known: {sorted(known)}")
    bundle = args.bundle.resolve()
    version = json.loads((bundle / "manifest.json").read_text())["bundle_version"]
    out = ROOT / "runs" / "lab" / f"emulated-cpu-families-{version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Runs of other targets from earlier invocations stay: each target is hours of CPU.
    earlier = json.loads(out.read_text())["targets"] if out.exists() else []
    results = {r["name"]: r for r in earlier}
    qemu = subprocess.run([str(args.emu / "qemu/usr/bin/qemu-x86_64"), "--version"],
                          capture_output=True, text=True, check=True).stdout.split("\n")[0]
    for name in wanted:  # written after each target: a long run shows what it has so far
        target = known[name]
        if args.route_only:
            result = results[name]  # KeyError: nothing recorded for it yet
        else:
            result = {"name": name, **run_target(target, args.emu, bundle, args.artifact)}
        if target.record:
            result["route_check"] = route_check(target, args.emu, bundle, args.artifact)
        results[name] = result
        out.write_text(json.dumps({
            "bundle_version": version, "artifact": args.artifact, "qemu": qemu,
            "host_python": sys.version.split()[0],
            "commands": sorted({*(json.loads(out.read_text()).get("commands", [])
                                  if out.exists() else []),
                                " ".join(["lab/emulated_cpu_families.py",
                                          *sys.argv[1:]])}),
            "targets": list(results.values()),
            "max_score_gap_between_family_receipts": max_score_gaps(
                family_runs(bundle, args.artifact))}, indent=2) + "\n")
        print(f"wrote {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
