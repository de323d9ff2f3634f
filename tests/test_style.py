"""Comments say why; figures live in bench/ (bench/DECISIONS.md and the results files), to be re-measured there."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cds_service"
FIGURE = re.compile(r"\d[\d.,]*\s?(ms|us|µs|ns|million|instructions|requests/s)\b")


def _comments_and_docstrings(path: Path):
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING
                                              and token.string.lstrip("rbuRBU").startswith(('"""', "'''"))):
            for offset, line in enumerate(token.string.splitlines()):
                yield token.start[0] + offset, line


def test_no_benchmark_figure_in_a_comment_or_docstring():
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) for number, line in _comments_and_docstrings(path)
             if FIGURE.search(line)]
    assert found == [], "benchmark figures belong in bench/DECISIONS.md:\n" + "\n".join(found)


def test_the_check_finds_a_figure():
    assert FIGURE.search("# about 20 ms on first use") and FIGURE.search("costs 8-17 us")
    assert not FIGURE.search("# HbA1c of 8.0 % and above") and not FIGURE.search("# at most 16 KB per key")
