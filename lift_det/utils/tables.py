"""The markdown tables of the reports and the README: one writer."""

from typing import Iterable, List, Sequence


def md_row(cells: Iterable) -> str:
    """One markdown table line: ``| a | b |``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence, rows: Iterable[Sequence], align: str = "") -> List[str]:
    """A markdown table's lines: the header, its rule and one line per row. ``align``: a letter
    per column, ``r`` right-aligns it (default: every column left)."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(header), "l"))
    return [md_row(header), rule, *map(md_row, rows)]


def md_block(header: Sequence, rows: Iterable[Sequence], align: str = "") -> str:
    """:func:`md_table` as one string (a report joins its blocks with blank lines)."""
    return "\n".join(md_table(header, rows, align))
