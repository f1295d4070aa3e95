"""Every measured number quoted in README.md, docs/ and the gallery's text is in its results file.

The quoting convention (described for writers in ``docs/benchmarks.rst``, "Where the numbers come
from"):

* A paragraph (a block of text between blank lines; a table or a list counts as one) names the
  results files its numbers come from: ``benchmarks/results/NAME.md`` or just ``NAME.md`` (also
  ``.rst`` files there and ``raw/*.json``). A paragraph that names none takes the files of the
  nearest paragraph above it, in the same section, that does.
* Every decimal number of a paragraph (``21.37``, ``0.807``) and every percentage (``94 %``) must
  be a number of one of its files, to the precision quoted: ``21.4`` quotes ``21.37`` (rounded
  half up or half to even), ``0.50`` quotes ``0.500``; the sign is free, so "2.11 dB below"
  quotes ``-2.11``; a percentage ``p %`` is ``p`` or the fraction ``p / 100``. Quote at the
  file's precision where it matters: a one-decimal quote is matched by more numbers.
  Numbers inside inline code (file names, options, code) are not quotes.
* A paragraph with a measured-looking number (a number followed by dB, bits/dim, nats, s per
  step, hours, "x cheaper", "x the time", ...) and no results file at all fails.
* Numbers that are computed rather than quoted are substituted at build time (``|name|``,
  defined in ``docs/conf.py`` from the results files) and are not checked here.

The gallery's text is the module docstring and the ``# %%`` text cells of each example.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")  # also inside names: random70, unobs0.9
DECIMAL = re.compile(r"(?<![\w.\-/])(\d+\.\d+)(?![\d]|\.\d)")
PERCENT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*%|(?=\s+to\s+\d+(?:\.\d+)?\s*%))")
UNIT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s*(?:dB\b|bits/dim|bits per dim|nats\b|s per (?:step|image|draw)|hours\b|"
                  r"x (?:cheaper|faster|slower|the time|the evaluations))")
SOURCE = re.compile(r"(?:benchmarks/results/)?(?:raw/)?([A-Za-z][\w.\-]*\.(?:md|rst|json))")


def _results_files() -> dict[str, Path]:
    files = {p.name: p for p in RESULTS.glob("*") if p.suffix in (".md", ".rst")}
    files.update({p.name: p for p in (RESULTS / "raw").glob("*.json")})
    return files


FILES = _results_files()
_VALUES: dict[str, set[Decimal]] = {}


def rounded(pool: set[Decimal], places: int) -> set[Decimal]:
    """The pool rounded to ``places`` decimals, half up and half to even."""
    q = Decimal(1).scaleb(-places)
    return {f.quantize(q, rounding=r) for f in pool for r in (ROUND_HALF_UP, ROUND_HALF_EVEN)
            if f.as_tuple().exponent <= -places or f == f.quantize(q, rounding=ROUND_HALF_UP)}


def matches(accepted: set[Decimal], pool: set[Decimal]) -> bool:
    for a in accepted:
        places = max(0, -a.as_tuple().exponent)
        if a in pool or a.quantize(Decimal(1).scaleb(-places)) in rounded(pool, places):
            return True
    return False


def values(name: str) -> set[Decimal]:
    """Absolute values of every number of a results file (as exact decimals)."""
    if name not in _VALUES:
        text = FILES[name].read_text()
        out = set()
        for tok in NUMBER.findall(text.replace("−", "-")):
            try:
                out.add(abs(Decimal(tok)))
            except ArithmeticError:  # pragma: no cover
                pass
        _VALUES[name] = out
    return _VALUES[name]


def strip_code(text: str) -> str:
    """Text without inline code, roles, math, links and file names (which are not quotes)."""
    text = re.sub(r"``.*?``", " ", text, flags=re.S)
    text = re.sub(r":\w+:`[^`]*`", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    return SOURCE.sub(" ", text)


def sources(text: str) -> set[str]:
    return {m for m in SOURCE.findall(text) if m in FILES}


# ------------------------------------------------------------------------------------ paragraphs
def rst_blocks(text: str, where: str):
    """(where, section, paragraph) of an rst text, without literal blocks and directives' code."""
    lines = text.splitlines()
    section, block, literal_indent = 0, [], None
    out = []

    def flush():
        if block:
            out.append((where, section, "\n".join(block)))
            block.clear()

    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                continue
            literal_indent = None
        if i + 1 < len(lines) and re.fullmatch(r"([=\-~^\"'`#*+])\1{2,}", lines[i + 1].strip()) and line.strip():
            flush()
            section += 1
            continue
        if re.fullmatch(r"([=\-~^\"'`#*+])\1{2,}", line.strip()):
            continue
        s = line.strip()
        if re.match(r"\.\. (code-block|code|literalinclude|math|image|figure|include|toctree|list-table|"
                    r"autosummary|currentmodule|contents|minigallery)\b", s) or (s.endswith("::") and
                                                                                not s.startswith(".. ")):
            if s.endswith("::") and not s.startswith(".. "):
                block.append(line[: -1])  # "text::" keeps its text
            flush()
            literal_indent = indent
            continue
        if not s:
            flush()
        else:
            block.append(line)
    flush()
    return out


def md_blocks(text: str, where: str):
    """(where, section, paragraph) of a Markdown text, without code blocks."""
    out, block, section, fenced = [], [], 0, False

    def flush():
        if block:
            out.append((where, section, "\n".join(block)))
            block.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            flush()
            continue
        if fenced or line.startswith("    "):
            continue
        if line.startswith("#"):
            flush()
            section += 1
            continue
        if not line.strip():
            flush()
        else:
            block.append(line)
    flush()
    return out


def gallery_blocks(path: Path):
    """Blocks of an example's module docstring and of its ``# %%`` text cells."""
    src = path.read_text()
    out = []
    doc = re.match(r'\s*(?:r?""")(.*?)"""', src, re.S)
    if doc:
        out += rst_blocks(doc.group(1).replace("\\\\", "\\"), f"{path}:docstring")
    for k, cell in enumerate(re.findall(r"^# %%\n((?:#.*\n)+)", src, re.M)):
        text = "\n".join(re.sub(r"^# ?", "", line) for line in cell.splitlines())
        out += [(w, s + 1000 * (k + 1), b) for w, s, b in rst_blocks(text, f"{path}:cell {k + 1}")]
    return out


def all_blocks():
    blocks = md_blocks((ROOT / "README.md").read_text(), "README.md")
    for p in sorted((ROOT / "docs").glob("*.rst")):
        blocks += rst_blocks(p.read_text(), str(p.relative_to(ROOT)))
    for p in sorted((ROOT / "docs" / "examples").rglob("*")):
        if p.suffix == ".rst":
            blocks += rst_blocks(p.read_text(), str(p.relative_to(ROOT)))
        elif p.suffix == ".py":
            blocks += gallery_blocks(p.relative_to(ROOT))
    return blocks


# ------------------------------------------------------------------------------------ the check
def quoted_numbers(text: str) -> list[tuple[str, set[Decimal]]]:
    """(token, accepted values) of every decimal number and percentage of a paragraph."""
    clean = strip_code(text)
    found = []
    spans = set()
    for m in PERCENT.finditer(clean):
        p = Decimal(m.group(1))
        found.append((m.group(1) + " %", {p, p / 100}))
        spans.add(m.start(1))
    for m in DECIMAL.finditer(clean):
        if m.start(1) not in spans:
            found.append((m.group(1), {Decimal(m.group(1))}))
    return found


def problems(blocks) -> list[str]:
    bad = []
    current: dict[tuple[str, int], set[str]] = {}
    for where, section, text in blocks:
        own = sources(text)
        key = (where.split(":")[0], section)
        if own:
            current[key] = own
        files = own or current.get(key, set())
        numbers = quoted_numbers(text)
        if not files:
            units = UNIT.findall(strip_code(text))
            if units:
                bad.append(f"{where}: measured numbers {units} without a results file: {text[:160]!r}")
            continue
        pool = set().union(*(values(f) for f in files))
        for token, accepted in numbers:
            if not matches(accepted, pool):
                bad.append(f"{where}: {token} is in none of {sorted(files)}: {text[:200]!r}")
    return bad


def test_quoted_numbers_are_in_their_results_files():
    bad = problems(all_blocks())
    assert not bad, f"{len(bad)} quoted numbers not found:\n" + "\n".join(bad)


def test_the_check_catches_a_wrong_number():
    text = "PSNR 21.37 dB on random70 (`benchmarks/results/restoration.md`)."
    assert problems([("x", 0, text)]) == []
    assert problems([("x", 0, text.replace("21.37", "21.4"))]) == []  # rounded
    assert len(problems([("x", 0, text.replace("21.37", "21.39"))])) == 1
    assert len(problems([("x", 0, text.replace("21.37", "99.9"))])) == 1
    assert len(problems([("x", 0, "a measured 12.5 dB with no source")])) == 1
    assert len(problems([("x", 0, "about 2.4x cheaper per step")])) == 1
    assert problems([("x", 0, "a parameter: noise 0.01, mask 0.3")]) == []  # no unit, no source: not a quote
    # a paragraph without a source takes the one above it in the same section, not in the next
    assert problems([("x", 0, "see `restoration.md`"), ("x", 0, "MMSE-E 21.37 dB")]) == []
    assert len(problems([("x", 0, "see `restoration.md`"), ("x", 1, "MMSE-E 21.37 dB")])) == 1


@pytest.mark.parametrize("name", sorted(n for n in FILES if n.endswith(".md")))
def test_results_files_parse(name):
    assert values(name), name
