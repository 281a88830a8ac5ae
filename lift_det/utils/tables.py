"""The markdown tables of the reports and the README: one writer."""

from typing import Iterable, List, Sequence


def md_table(header: Sequence, rows: Iterable[Sequence], align: str = "") -> List[str]:
    """A markdown table's lines: the header, its rule and one line per row. ``align``: a letter
    per column, ``r`` right-aligns it (default: every column left)."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(header), "l"))
    lines = ["| " + " | ".join(str(c) for c in cells) + " |" for cells in [header, *rows]]
    return [lines[0], rule, *lines[1:]]


def md_block(header: Sequence, rows: Iterable[Sequence], align: str = "") -> str:
    """:func:`md_table` as one string (a report joins its blocks with blank lines)."""
    return "\n".join(md_table(header, rows, align))
