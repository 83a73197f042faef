"""Draw napari-cellnet's package diagram from the code (import graph by grimp, the library
import-linter uses) and print it as a Mermaid block for docs/architecture.md.

    python scripts/architecture.py            # print the diagram
    python scripts/architecture.py --check    # exit 1 if docs/architecture.md differs

Edges are "imports" at package level (``segmentation --> models`` means some module of
``segmentation`` imports one of ``models``), lazy imports inside functions included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grimp

ROOT = "napari_cellnet"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BEGIN, END = "<!-- diagram: begin (scripts/architecture.py) -->", "<!-- diagram: end -->"
GLUE = "npe2 glue"  # _reader, _writer, _sample_data, datasets, the package itself
ORDER = ["widgets", "cli", GLUE, "segmentation", "classification", "models", "core"]


def node(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("_reader", "_writer", "_sample_data", "datasets"):
        return GLUE
    return parts[1]


def package_edges() -> list[tuple[str, str]]:
    graph = grimp.build_graph(ROOT, cache_dir=None)
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = node(module), node(imported)
            if a != b and imported != ROOT:  # the root package is only __version__
                edges.add((a, b))
    return sorted(edges, key=lambda e: (ORDER.index(e[0]), ORDER.index(e[1])))


def mermaid() -> str:
    ids = {name: name.replace(" ", "_") for name in ORDER}
    lines = ["```mermaid", "graph TD"]
    lines += [f'    {ids[n]}["{n}"]' for n in ORDER]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in package_edges()]
    lines.append("```")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with docs/architecture.md")
    args = ap.parse_args()
    drawn = mermaid()
    if not args.check:
        print(drawn)
        return 0
    text = DOC.read_text()
    current = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()
    if current != drawn:
        print("docs/architecture.md is out of date; paste the output of scripts/architecture.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
