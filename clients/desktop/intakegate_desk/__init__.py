"""intakegate-desk: the reference desktop support client.

It embeds `intakegate.runtime.Router` in-process (no subprocess, no network): an agent types,
pastes or opens tickets and sees each one's route, reason, score against the threshold and the
segment that decided. Modules without Qt (`tickets`, `session`, `highlight`, `queue`, `export`)
hold the logic, so they are testable without a display; `window` and `worker` are the Qt side.
"""

__version__ = "0.1.0"
