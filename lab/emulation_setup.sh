#!/usr/bin/env bash
# Prepare QEMU user-mode emulators for gating an int8 artifact on CPU families this machine is
# not: x86 without AVX-512 (qemu-x86_64 -cpu Haswell / Nehalem, running this checkout's .venv)
# and arm64 (qemu-aarch64 over a Debian arm64 Python with the runtime's aarch64 wheels).
#
# Why emulation: onnxruntime picks its int8 kernels from cpuid (x86) or hwcaps (arm64), and
# QEMU's TCG reports the emulated CPU's features and executes the kernels' integer and IEEE
# float instructions exactly, so a receipt scored here runs the same kernels a real CPU of that
# family runs. It is slow (minutes per receipt), which is why it is a study, not a test.
#
# Needs root (apt-get), Debian's mirrors and PyPI; writes only under $EMU (default /tmp/emu).
# Usage: lab/emulation_setup.sh   (then emulated_cpu_families.py)
set -euo pipefail
EMU=${EMU:-/tmp/emu}
VENV=${VENV:-.venv}
mkdir -p "$EMU"

command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap

# QEMU 10 (Debian trixie, statically linked): bookworm's 7.2 qemu-aarch64 crashes in
# onnxruntime's CPU probe, and its x86 AVX2 support is new.
if [ ! -x "$EMU/qemu/usr/bin/qemu-aarch64" ]; then
  mmdebstrap --variant=extract --architectures=amd64 --include=qemu-user trixie "$EMU/qemu" \
    http://deb.debian.org/debian
fi

# An arm64 Python of the host's minor version, unpacked only (nothing of it is run natively).
PYVER=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ ! -x "$EMU/arm64root/usr/bin/python$PYVER" ]; then
  mmdebstrap --variant=extract --architectures=arm64 \
    --include="python$PYVER-minimal,libpython$PYVER-stdlib,libc6,zlib1g,libffi8,libssl3,libstdc++6,libgcc-s1" \
    bookworm "$EMU/arm64root" http://deb.debian.org/debian
fi

# The runtime's dependencies at exactly the host venv's versions, as aarch64 wheels, and this
# checkout's intakegate (pure Python) beside them.
PINS=$("$VENV/bin/python" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in
               ("numpy", "onnxruntime", "tokenizers", "typer", "sentencex", "cryptography")))
EOF
)
rm -rf "$EMU/arm64site"
"$VENV/bin/pip" install -q --target "$EMU/arm64site" --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux2014_aarch64 --python-version "$PYVER" --implementation cp $PINS
"$VENV/bin/pip" install -q --no-deps --no-build-isolation --target "$EMU/arm64site" .
rm -rf build  # setuptools' build tree of that install
echo "ready: $EMU (qemu $("$EMU/qemu/usr/bin/qemu-aarch64" --version | head -1 | awk '{print $3}'),"\
     "arm64 python $PYVER, $PINS)"
