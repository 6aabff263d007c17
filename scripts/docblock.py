"""The marked block of a generated docs section: the check scripts write their tables between two HTML comments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def fenced_table(head: tuple, body: list[tuple]) -> list[str]:
    """A fenced text table of string cells (the CLI's own table, every column left-aligned), as lines."""
    from moesim.cli.output import table

    return ["```", *table(body, head, "l" * len(head)).split("\n"), "```"]


def replace_block(doc: Path, begin: str, end: str, block: str) -> None:
    """Put `block` between the `begin` and `end` markers of `doc` (markers kept, the rest of the file untouched)."""
    text = doc.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        sys.exit(f"{doc}: no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    doc.write_text(head + begin + "\n" + block + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")


def block_main(argv: list[str] | None, description: str, doc: Path, begin: str, end: str, render, name: str) -> int:
    """A check script's command line with --write / --check: print its block, rendered once; --write puts it in
    `doc`; --check exits 1 (saying which script rewrites it) when `doc`'s block differs. `name`: scripts/NAME.py."""
    parser = argparse.ArgumentParser(description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"replace the marked block of {doc.name}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when the block of {doc.name} is stale")
    args = parser.parse_args(argv)
    block = render()
    if args.check:
        text = doc.read_text(encoding="utf-8")
        if begin not in text or end not in text:
            sys.exit(f"{doc}: no '{begin}' ... '{end}' block")
        if text.split(begin, 1)[1].split(end, 1)[0].strip() != block.strip():
            print(f"{doc.name}: the {name} block is stale; run: python scripts/{name}.py --write", file=sys.stderr)
            return 1
        print(f"{doc.name}: the {name} block is current")
        return 0
    if args.write:
        replace_block(doc, begin, end, block)
    print(block)
    return 0


def run_check(description: str, render, doc: Path, begin: str, end: str, cache: bool = False) -> None:
    """A check script's command line: print its block, rendered once; with --write also put it in `doc`. With
    `cache`, also --cache DIR (scripts/heldout_rule.py's cache folder of held-out matrices), rendered as render(DIR)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", action="store_true", help=f"replace the marked block of {doc.name}")
    if cache:
        parser.add_argument("--cache", type=Path, default=None, help="scripts/heldout_rule.py's cache folder")
    args = parser.parse_args()
    write = args.write
    block = render(args.cache) if cache else render()
    if write:
        replace_block(doc, begin, end, block)
    print(block)
