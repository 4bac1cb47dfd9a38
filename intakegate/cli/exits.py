"""The exit codes every `intakegate` command uses, in one place (documented in `--help`)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    HELD = 1            # a gate held a run or artifact; shadow report recommends rollback
    BAD_INPUT = 2       # bad argument, unreadable input, bad bundle, missing extra
    NOT_READY = 3       # the router is in fail-closed mode: every ticket went to a person
    INTERNAL = 4        # a bug: one line here, the traceback with INTAKEGATE_DEBUG=1
    NOT_CHECKED = 5     # gate: nothing held, but an artifact needs an extra this machine lacks
    INTERRUPTED = 130


EPILOG = ("Exit codes: 0 ok; 1 held (gate) or rollback recommended; 2 bad argument, input, "
          "bundle or missing extra; 3 router not ready (fail-closed); 4 internal error "
          "(INTAKEGATE_DEBUG=1 shows the traceback); 5 gate: not checked (an extra is missing).")
