"""Where to paint the deciding segment in a Qt text widget.

`Decision.segment` gives code-point offsets into the ticket text exactly as routed. A Qt text
document counts UTF-16 code units and keeps one character per line break, so the offsets are
mapped, not reused: an emoji before the segment or a CRLF ticket would otherwise shift the
highlight onto the wrong words. A segment that does not fit the text is not painted at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from intakegate.runtime.decision import DecidingSegment


@dataclass(frozen=True)
class Span:
    """Positions in the displayed document, and the segment's own text for the side panel."""

    start: int
    end: int
    text: str


def display_text(text: str) -> str:
    """What the widget shows: line breaks normalised to \\n (Qt does the same on its side)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _doc_len(prefix: str) -> int:
    return len(display_text(prefix).encode("utf-16-le", "surrogatepass")) // 2


def segment_span(text: object, segment: DecidingSegment | None) -> Span | None:
    """The document span to highlight, or None (no segment, no text, or it does not fit)."""
    if segment is None or not isinstance(text, str):
        return None
    start, end = segment.start, segment.end
    if not (0 <= start < end <= len(text)):
        return None
    return Span(_doc_len(text[:start]), _doc_len(text[:end]), text[start:end])
