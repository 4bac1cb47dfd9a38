"""One time budget per ticket that covers tokenization and model work together.

`timeout_s` used to bound only the backend's `Run`; a ticket that was slow to tokenize (before
the input caps, `"\\ufdfa" * 65000` took seconds) stalled the router past it. Here each ticket's
whole scoring (windows, token checks, `Run`, score checks) runs on a worker thread and the caller
waits at most the budget; a late result is discarded, never routed. The worker uses its own
tokenizer (tokenizers are per thread), so a timed-out ticket never shares one with the next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout

from intakegate.routing import Reason
from intakegate.scoring.ticket_score import Scored


def score_within_budget(pool: Executor, score_one: Callable[[str], Scored],
                        texts: Sequence[str], timeout_s: float) -> list[Scored]:
    """`score_one(text)` for each text, each given `timeout_s` seconds from its submission.

    All tickets are submitted at once (the pool runs them side by side), so a batch takes about
    one budget, not one per ticket; a ticket still waiting in the queue when its budget ends is
    a timeout too (overload escalates, it does not queue without bound).
    """
    import time

    futures = [(time.monotonic(), pool.submit(score_one, text)) for text in texts]
    out: list[Scored] = []
    for submitted, future in futures:
        remaining = timeout_s - (time.monotonic() - submitted)
        try:
            out.append(future.result(timeout=max(0.0, remaining)))
        except FutureTimeout:
            future.cancel()
            out.append(Scored(None, Reason.TIMEOUT, detail=f"timeout: tokenization and "
                                                           f"inference exceeded {timeout_s}s; "
                                                           f"the late result is discarded"))
    return out
