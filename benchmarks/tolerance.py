"""How closely the parser agrees with what real server lines carry, field by field.

    python benchmarks/tolerance.py [--lines 20000] [--seed 1] [--show 25]

Parses `--lines` generated lines per preset (tests/realworld.py: nginx combined, main,
timed_combined, Apache combined and common, nginx and Apache error logs; mostly normal traffic,
each hard class of line at a few per cent) and the documentation samples
(tests/data/doc_samples/samples.json) with the project's parser (`parse_chunk`), and compares
every field the ground truth names: agreement = fields agreeing / fields checked. A rejected
or lost line counts all its fields as disagreeing. Prints the figures per preset and per line
class, the access and error-log totals against the targets (99 % and 99.5 %), the commonest
reject reasons and the first disagreements (line, field, expected, got), one per preset, class
and field first, so each kind of problem shows up once.

Which parsed column a field is read from: `client` <- `_client_ip`; `time` <- `responded_at`
for nginx ($time_local is written at the response end) and `received_at` for Apache (%t is the
arrival); `extra.<key>` <- `_x_<key>`; error logs: `logged_at`, `level`, `_client_ip`,
`message` (its start must equal the expected %M start; for Apache the fields the server writes
before %M, [pid ...], [client ...], [R:...], file(line): and (status)text:, are ignored on both
sides), `lines` = the physical lines of the entry (up to the next entry or reject).

Exit status 0 unless it crashes: it measures, it does not gate (tests/test_tolerance_corpus.py does).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.realworld import (  # noqa: E402
    ACCESS_FIELDS,
    EXTRA_KEYS,
    PRESETS,
    Case,
    by_preset,
    doc_samples,
    generate,
    is_access,
    log_bytes,
)
from transforms.chunks import LogChunk  # noqa: E402
from transforms.formats import resolve_format  # noqa: E402
from transforms.parse import parse_chunk  # noqa: E402

TARGETS = {"access": 99.0, "error": 99.5}
ERROR_CHECKS = ("logged_at", "level", "client", "message", "lines")


@dataclass
class Tally:
    agree: int = 0
    checked: int = 0
    cases: int = 0

    def add(self, ok: bool) -> None:
        self.checked += 1
        self.agree += bool(ok)

    @property
    def pct(self) -> float:
        return 100.0 * self.agree / self.checked if self.checked else 100.0


@dataclass
class Disagreement:
    preset: str
    line_no: int
    classes: tuple
    field: str
    expected: object
    got: object
    text: str


@dataclass
class Measure:
    """Agreement of one set of cases (the generator's or the documentation samples)."""

    label: str
    presets: dict = field(default_factory=lambda: defaultdict(Tally))        # preset -> Tally
    classes: dict = field(default_factory=lambda: defaultdict(Tally))        # (kind, class) -> Tally
    fields: dict = field(default_factory=lambda: defaultdict(Tally))         # (kind, field) -> Tally
    totals: dict = field(default_factory=lambda: defaultdict(Tally))         # kind -> Tally
    counts: dict = field(default_factory=dict)     # preset -> lines, rows, continued, rejected, unaccounted
    reject_reasons: Counter = field(default_factory=Counter)
    disagreements: list = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, kind: str) -> float:
        return self.totals[kind].pct

    def worst_classes(self, kind: str, n: int = 6) -> list[tuple[str, Tally]]:
        rows = [(cls, t) for (k, cls), t in self.classes.items() if k == kind and t.checked]
        return sorted(rows, key=lambda r: (r[1].pct, -r[1].checked))[:n]

    @property
    def unaccounted(self) -> int:
        return sum(c["unaccounted"] for c in self.counts.values())


def _kind(preset: str) -> str:
    return "access" if is_access(preset) else "error"


# -- parsing -------------------------------------------------------------------------------------


def parse_cases(preset: str, cases: list[Case]):
    """The cases as one log file through parse_chunk -> (rows by source line, rejects by source
    line, first line of each case, line counts)."""
    fmt = resolve_format(preset)
    data = log_bytes(cases)
    records, rejects = parse_chunk(fmt, LogChunk(source=f"tolerance-{preset}", input_id="tolerance", first_line=1,
                                                 data=data, log_format=preset))
    table = records.records
    rows: dict[int, dict] = {}
    if table.num_rows:
        columns = {}
        for name in table.column_names:
            column = table[name]
            if pa.types.is_timestamp(column.type):
                column = pc.cast(column, pa.int64())
            elif pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns[name] = column.to_pylist()
        names = list(columns)
        for values in zip(*(columns[n] for n in names)):
            row = dict(zip(names, values))
            rows[row["source_line"]] = row
    rejected = dict(zip(rejects.source_lines, rejects.reasons))
    starts, line = [], 1
    for case in cases:
        starts.append(line)
        line += case.lines
    counts = {"lines": line - 1, "rows": table.num_rows, "continued": records.continued,
              "rejected": len(rejects.source_lines)}
    counts["unaccounted"] = counts["lines"] - counts["rows"] - counts["continued"] - counts["rejected"]
    return rows, rejected, starts, counts


# -- comparing -----------------------------------------------------------------------------------

# What Apache writes before %M in an entry's text (ErrorLogFormat fields), ignored on both sides.
_NOT_MESSAGE = re.compile(r"^(?:\[(?:R|C):[^\]]*\] |\[pid [^\]]*\] |\[(?:client|remote) [^\]]*\] "
                          r"|[\w.-]+\.c\(\d+\): |\((?:EAI |OS |os 0x)?-?[0-9a-fA-F]+\)[^\[\]:]*: )*")


def _message_start(text: str, apache: bool) -> str:
    return _NOT_MESSAGE.sub("", text, count=1) if apache else text


def access_checks(case: Case, row: dict) -> list[tuple[str, object, object, bool]]:
    """(field, expected, got, agrees) for every field `case` carries."""
    e = case.expected
    got = {"client": row.get("_client_ip"), "status": row.get("status"), "bytes_sent": row.get("bytes_sent"),
           "time": row.get("received_at" if case.preset.startswith("apache_") else "responded_at")}
    for name in ACCESS_FIELDS[4:]:
        got[name] = row.get(name)
    checks = [(name, e[name], got[name], e[name] == got[name]) for name in ACCESS_FIELDS if name in e]
    extra = e.get("extra", {})
    for key in EXTRA_KEYS:
        value = row.get(f"_x_{key}")
        if key in extra or value is not None:   # a spurious extra value disagrees too
            checks.append((f"extra.{key}", extra.get(key), value, extra.get(key) == value))
    return checks


def error_checks(case: Case, row: dict, span: int) -> list[tuple[str, object, object, bool]]:
    e = case.expected
    apache = case.preset == "apache_error"
    checks = []
    got = {"logged_at": row.get("logged_at"), "level": row.get("level"), "client": row.get("_client_ip"),
           "lines": span}
    for name in ("logged_at", "level", "client", "lines"):
        if name in e:
            checks.append((name, e[name], got[name], e[name] == got[name]))
    message = row.get("message")
    want = _message_start(e["message"], apache)
    ok = message is not None and _message_start(message, apache).startswith(want)
    checks.append(("message", e["message"], message, ok))
    return checks


def _missing_checks(case: Case, why: str) -> list[tuple[str, object, object, bool]]:
    e = case.expected
    if is_access(case.preset):
        names = [n for n in ACCESS_FIELDS if n in e] + [f"extra.{k}" for k in e.get("extra", {})]
        values = {**e, **{f"extra.{k}": v for k, v in e.get("extra", {}).items()}}
    else:
        names = [n for n in ERROR_CHECKS if n in e]
        values = e
    return [(name, values[name], why, False) for name in names]


def measure(cases_by_preset: dict[str, list[Case]], label: str = "generator", keep: int = 2000) -> Measure:
    """Parse and compare; keeps the first `keep` disagreements."""
    started = time.perf_counter()
    m = Measure(label)
    for preset in [p for p in PRESETS if p in cases_by_preset] + [p for p in cases_by_preset if p not in PRESETS]:
        cases = cases_by_preset[preset]
        if not cases:
            continue
        kind = _kind(preset)
        rows, rejected, starts, counts = parse_cases(preset, cases)
        m.counts[preset] = counts
        m.reject_reasons.update(f"{preset}: {r}" for r in rejected.values())
        boundaries = sorted(set(rows) | set(rejected))
        next_boundary = {b: (boundaries[i + 1] if i + 1 < len(boundaries) else counts["lines"] + 1)
                         for i, b in enumerate(boundaries)}
        for case, first in zip(cases, starts):
            row = rows.get(first)
            if row is None:
                reason = rejected.get(first)
                checks = _missing_checks(case, f"<rejected: {reason}>" if reason else "<no row, no reject>")
            elif kind == "access":
                checks = access_checks(case, row)
            else:
                checks = error_checks(case, row, next_boundary[first] - first)
            classes = case.classes
            m.presets[preset].cases += 1
            m.totals[kind].cases += 1
            for cls in classes:
                m.classes[(kind, cls)].cases += 1
            for name, expected, got, ok in checks:
                m.presets[preset].add(ok)
                m.totals[kind].add(ok)
                m.fields[(kind, name)].add(ok)
                for cls in classes:
                    m.classes[(kind, cls)].add(ok)
                if not ok and len(m.disagreements) < keep:
                    m.disagreements.append(Disagreement(preset, first, classes, name, expected, got, case.text))
    m.seconds = time.perf_counter() - started
    return m


# -- reporting -----------------------------------------------------------------------------------


def _short(value, limit: int = 110) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def pick_disagreements(m: Measure, n: int) -> list[list[Disagreement]]:
    """Up to `n` lines, each with its disagreeing fields: first one line per (preset, first
    class, fields that disagree), then the other lines in file order."""
    lines: dict[tuple, list[Disagreement]] = {}
    for d in m.disagreements:
        lines.setdefault((d.preset, d.line_no), []).append(d)
    seen, first, rest = set(), [], []
    for group in lines.values():
        key = (group[0].preset, group[0].classes[0] if group[0].classes else "", tuple(d.field for d in group))
        (rest if key in seen else first).append(group)
        seen.add(key)
    return (first + rest)[:n]


def report(m: Measure, show: int = 20) -> str:
    out = [f"== {m.label}: {sum(c['lines'] for c in m.counts.values())} lines, {m.seconds:.1f} s"]
    out.append(f"  {'preset':<16}{'lines':>7}{'rows':>7}{'cont':>6}{'rej':>6}{'lost':>6}{'fields':>9}{'agree':>9}")
    for preset, c in m.counts.items():
        t = m.presets[preset]
        out.append(f"  {preset:<16}{c['lines']:>7}{c['rows']:>7}{c['continued']:>6}{c['rejected']:>6}"
                   f"{c['unaccounted']:>6}{t.checked:>9}{t.pct:>8.2f}%")
    for kind in ("access", "error"):
        rows = sorted(((cls, t) for (k, cls), t in m.classes.items() if k == kind), key=lambda r: (r[1].pct, r[0]))
        if not rows:
            continue
        out.append(f"  {kind} classes{'':<14}{'cases':>7}{'fields':>9}{'agree':>9}")
        for cls, t in rows:
            out.append(f"    {cls:<26}{t.cases:>7}{t.checked:>9}{t.pct:>8.2f}%")
        fields = sorted(((f, t) for (k, f), t in m.fields.items() if k == kind), key=lambda r: (r[1].pct, r[0]))
        out.append(f"  {kind} fields: " + ", ".join(f"{f} {t.pct:.2f}%" for f, t in fields))
    for kind in ("access", "error"):
        t = m.totals[kind]
        if t.checked:
            verdict = "meets" if t.pct >= TARGETS[kind] else "BELOW"
            out.append(f"  {kind.upper():<7} {t.pct:7.3f}% of {t.checked} field checks ({t.cases} entries) - "
                       f"{verdict} the target {TARGETS[kind]}%")
    if m.reject_reasons:
        out.append("  commonest reject reasons: " + "; ".join(f"{r} ({n})" for r, n in m.reject_reasons.most_common(6)))
    picked = pick_disagreements(m, show)
    if picked:
        out.append(f"  disagreements, one line per kind first ({len(picked)} lines shown):")
        for group in picked:
            d = group[0]
            out.append(f"    {d.preset} line {d.line_no} [{', '.join(d.classes)}] {_short(d.text, 220)}")
            for d in group:
                out.append(f"      {d.field}: expected {_short(d.expected, 90)}, got {_short(d.got, 90)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20000, help="generated entries per preset (default 20000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=20, help="disagreements to print per set (default 20)")
    args = parser.parse_args(argv)
    generated = {p: generate(p, args.lines, args.seed) for p in PRESETS}
    gen = measure(generated, f"generator ({args.lines} entries per preset, seed {args.seed})")
    docs = measure(by_preset(doc_samples()), "documentation samples (tests/data/doc_samples)")
    print(report(gen, args.show))
    print()
    print(report(docs, args.show))
    print()
    print("== overall (generator + documentation samples)")
    for kind in ("access", "error"):
        agree = gen.totals[kind].agree + docs.totals[kind].agree
        checked = gen.totals[kind].checked + docs.totals[kind].checked
        pct = 100.0 * agree / checked if checked else 100.0
        print(f"  {kind.upper():<7} {pct:7.3f}%  (generator {gen.pct(kind):.3f}%, documentation "
              f"{docs.pct(kind):.3f}%; target {TARGETS[kind]}%)")
    print(f"  lines not accounted for (neither row, continuation nor reject): {gen.unaccounted + docs.unaccounted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
