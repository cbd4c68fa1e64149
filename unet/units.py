"""Durations and sizes in the words a user reads: one formatter each, shared by the pages, reports and messages.

Two kinds of duration: `duration_text` for what happened (a run took "3 min 05 s"), `estimate_text` for what is
expected ("about 3.5 min": a rounded figure, since estimates are rough; "under a second", never "0 s"), and
`clock_text` for the live clocks of the Train page ("1:02:05"). Sizes are decimal (1 GB = 10^9 bytes), as a shop's
label and the OS's disk tools say. Counts of things take their plural by `count_text` ("1 image", "2 images").
"""

from __future__ import annotations

GB = 1e9
MB = 1e6


def duration_text(seconds: float | None) -> str:
    """'45 s', '3 min 05 s', '2 h 07 min'; '' for an unknown duration."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def estimate_text(seconds: float) -> str:
    """A rough duration: 'under a second', '45 s', '3.5 min', '1.2 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def about_text(seconds: float) -> str:
    """`estimate_text` in a sentence: 'about 3.5 min', 'under a second'."""
    text = estimate_text(seconds)
    return text if seconds < 1 else f"about {text}"


def clock_text(seconds: float) -> str:
    """A clock: '4:05', or '1:02:05' from an hour on."""
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def bytes_text(count: float) -> str:
    """'512 MB', '1.5 GB', '24 GB'."""
    if count < GB:
        return f"{count / MB:.0f} MB"
    return f"{count / GB:.1f} GB" if count < 10 * GB else f"{count / GB:.0f} GB"


def count_text(count: int, noun: str, plural: str | None = None) -> str:
    """'1 image', '0 images', '2 held-back images': the noun in the plural except for exactly one."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
