"""What a folder release did, in the privacy officer's words. Qt-free: the batch window shows
these lines, and tests read them without a window."""

from __future__ import annotations

# The summary's words for the statuses that are not "released" (written) or "not started",
# which have sentences of their own.
STATUS_WORDS = {"done-earlier": "released into this folder before (nothing spent again)",
                "skipped": "skipped (not a file)", "refused": "refused (budget or burned-in text)",
                "failed": "failed"}


def release_summary(counts: dict[str, int], cancelled: bool) -> list[str]:
    """What a folder release did, in the officer's words: how many of the images were
    released, which were not started and that nothing was spent on them, the rest by
    status; and whether a Cancel came too late to stop anything."""
    images = sum(n for status, n in counts.items() if status != "skipped")
    written, waiting = counts.get("written", 0), counts.get("not-started", 0)
    lines = [f"<b>Released {written} of {images} images.</b>"]
    if waiting:
        why = "cancelled" if cancelled else "the run stopped early"
        lines.append(f"Not started: {waiting} ({why}). They were never opened and nothing "
                     "was spent on them: the ledger has no entry for them.")
    elif cancelled:
        lines.append("Cancel came after the last image had started: every image was "
                     "processed.")
    others = [f"{STATUS_WORDS.get(status, status)}: {n}" for status, n in sorted(counts.items())
              if status not in ("written", "not-started")]
    if others:
        lines.append("; ".join(others).capitalize() + ".")
    return lines
