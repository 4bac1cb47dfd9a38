"""No silent files: settings that keep the router's libraries from writing outside the bundle.

onnxruntime (1.29 and later on Linux and macOS) starts a telemetry provider when it is imported:
it creates `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` (or under `$XDG_CACHE_HOME`) with a
`deviceid` file and an SQLite `onnxruntime.db` holding the executable path, OS, CPU model and
container detection, keeps it open, and uploads session events. The opt-out is the environment
variable `ORT_DISABLE_TELEMETRY=1` (the one the 1.32.0 library reads; its own strings and the
HOME test in tests/test_privacy.py show it), read when the library initialises, so it must be set
before `import onnxruntime`: `onnxruntime.disable_telemetry_events()` after the import does not
remove or stop the files (measured on 1.32.0). `ORT_TELEMETRY_DISABLED` is set too: it is the
name onnxruntime PR #29843 uses for the full opt-out, in case a later release reads only it.
`import intakegate.runtime` applies both (unless the caller set them) before anything in the
runtime imports onnxruntime; a process that imported onnxruntime earlier is logged.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)
QUIET_ENV = {"ORT_DISABLE_TELEMETRY": "1", "ORT_TELEMETRY_DISABLED": "1"}


def quiet_libraries() -> bool:
    """Set the opt-outs (a caller's own value wins); False when onnxruntime was imported first,
    too late for the setting to take effect in this process."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "onnxruntime" in sys.modules:
        log.warning("onnxruntime was imported before intakegate.runtime: its telemetry files "
                    "may already exist; import intakegate.runtime first or set "
                    "ORT_DISABLE_TELEMETRY=1 in the environment")
        return False
    return True
