"""The markdown tables of the reports and the README: one writer."""

from typing import Iterable, List, Sequence


def md_row(cells: Iterable) -> str:
    """One markdown table line: ``| a | b |``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence, rows: Iterable[Sequence], right: int = 0) -> List[str]:
    """A markdown table's lines: the header, its rule (the last ``right`` columns right-aligned)
    and one line per row."""
    rule = "|" + "---|" * (len(header) - right) + "---:|" * right
    return [md_row(header), rule, *map(md_row, rows)]
