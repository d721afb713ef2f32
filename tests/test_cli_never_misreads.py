"""The CLI never misreads its user: an unknown or misspelled flag is an error that names it (a
misspelled privacy control must not be ignored), no abbreviation passes for a flag, no argument list
ends in an internal error, and results that look like success but are empty say so."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accesslog.cli import build_parser, main
from accesslog.cli.flags import cli_date, join_relative_dates, today
from tests.conftest import SAMPLE_NOW, SAMPLES, vhost_warehouse

LOG = str(SAMPLES / "access.log")
RUN = ["run", LOG, "--log-format", "timed_combined", "--now", SAMPLE_NOW]


def cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:   # argparse's own exits (errors, --help)
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def rows(warehouse: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in warehouse.glob("access/date=*/*.parquet"))


def test_a_misspelled_privacy_flag_is_an_error_not_ignored(tmp_path, capsys):
    wh = tmp_path / "wh"
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", tmp_path / "k", "--retension-days=1"], capsys)
    assert code == 2
    assert "unknown option --retension-days" in err and "did you mean --retention-days" in err
    assert len(err.strip().splitlines()) == 1
    assert not wh.exists()                      # refused before anything ran
    # spelled right, the same flag expires every sample row (the window ends a day before --now)
    code, out, _ = cli([*RUN, "--warehouse", wh, "--keys", tmp_path / "k", "--retention-days=1"], capsys)
    assert code == 0 and rows(wh) == 0
    assert "nothing written" in out and "--retention-days 1" in out and "2026-11-24T00:00:00Z" in out


def test_the_bad_flag_is_named_not_its_value(tmp_path, capsys):
    code, _, err = cli([*RUN, "--warehouse", tmp_path / "wh", "--keys", tmp_path / "k", "--log-fromat", "x"], capsys)
    assert code == 2 and "unknown option --log-fromat" in err and "did you mean --log-format" in err


@pytest.mark.parametrize("argv, bad, meant", [
    (["stats", "--warehouse", "W", "--form", "2024-03-05"], "--form", "--from"),
    (["stats", "--warehouse", "W", "--rep", "totals"], "--rep", "--report"),
    (["report", "--ware", "W", "-o", "x.html"], "--ware", "--warehouse"),
    (["keys", "list", "--keys", "K", "--jsn"], "--jsn", "--json"),
    (["retention", "--warehouse", "W", "--day", "3"], "--day", "--days"),
])
def test_abbreviations_and_typos_are_refused(argv, bad, meant, capsys):
    code, _, err = cli(argv, capsys)
    assert code == 2
    assert f"unknown option {bad}" in err and meant in err
    assert "usage:" not in err and len(err.strip().splitlines()) == 1


def test_options_beam_declares_pass_and_others_only_after_a_separator(tmp_path, capsys):
    wh, keys = tmp_path / "wh", tmp_path / "k"
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--runner=FnApiRunner", "--direct_num_workers=1"],
                       capsys)
    assert code == 0, err
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--paralelism=2"], capsys)
    assert code == 2 and "unknown option --paralelism" in err and "did you mean --parallelism" in err
    assert "after a -- separator" in err
    # after --, an option goes to the runner unchecked (a runner may read options it does not declare)
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--", "--some_runner_only_option=1",
                        "--another_one", "2"], capsys)
    assert code == 0, err
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--runner", "FnApiRunner"], capsys)
    assert code == 2 and "take their value after =" in err
    code, _, err = cli(["stats", "--warehouse", wh, "--", "--x=1"], capsys)
    assert code == 2 and "only `accesslog run` and `accesslog stream`" in err
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--direct_num_workers=two"], capsys)
    assert code == 2 and "--direct_num_workers" in err and "internal error" not in err
    code, _, err = cli([*RUN, "--warehouse", wh, "--keys", keys, "--runner=NoSuchRunner"], capsys)
    assert code == 2 and "NoSuchRunner" in err


def test_relative_dates():
    before = today()
    got = {w: cli_date(w) for w in ("today", "yesterday", "-7d", "-2w", "Today")}
    after = today()
    for base in {before, after}:
        if got == {"today": base, "yesterday": base - timedelta(1), "-7d": base - timedelta(7),
                   "-2w": base - timedelta(14), "Today": base}:
            break
    else:
        pytest.fail(f"relative dates {got} around {before}")
    assert cli_date("2026-11-20") == date(2026, 11, 20)
    assert join_relative_dates(["stats", "--from", "-7d", "--to", "-1d"]) == ["stats", "--from=-7d", "--to=-1d"]
    args = build_parser().parse_args(join_relative_dates(["stats", "--warehouse", "W", "--from", "-3d"]))
    assert args.date_from in (before - timedelta(3), after - timedelta(3))


def test_last_sets_the_range_and_relative_dates_select_days(sample_warehouse, capsys):
    everything = cli(["stats", "--warehouse", sample_warehouse, "--report", "totals", "--json"], capsys)[1]
    first_day = date.fromisoformat(json.loads(everything)["totals"][0]["first_received_at"][:10])
    days_back = (today() - first_day).days
    code, out, _ = cli(["stats", "--warehouse", sample_warehouse, "--report", "totals", "--json",
                        "--last", f"{days_back + 1}d"], capsys)
    assert code == 0 and out == everything                 # the range reaches back to the first day
    code, out, err = cli(["stats", "--warehouse", sample_warehouse, "--report", "totals", "--json",
                          "--last", f"{days_back}d"], capsys)
    assert code == 0 and out != everything                 # ... one day shorter leaves that day out
    code, _, err = cli(["stats", "--warehouse", sample_warehouse, "--from", "-7d", "--to", "today",
                        "--report", "totals"], capsys)
    assert code == 0 and "no requests from" in err and "the warehouse holds 2026-11-1" in err
    code, _, err = cli(["stats", "--warehouse", sample_warehouse, "--last", "7d", "--from", "today"], capsys)
    assert code == 2 and "--last cannot be combined" in err


def test_empty_results_say_why(sample_warehouse, tmp_path, capsys):
    code, _, err = cli(["stats", "--warehouse", sample_warehouse, "--host", "no.such.host", "--report", "totals"],
                       capsys)
    assert code == 0 and "no requests for host 'no.such.host'" in err
    (tmp_path / "not-a-warehouse").mkdir()
    code, _, err = cli(["stats", "--warehouse", tmp_path / "not-a-warehouse"], capsys)
    assert code == 2 and "is no accesslog warehouse" in err
    code, out, err = cli(["report", "--warehouse", sample_warehouse, "--host", "no.such.host", "-o",
                          tmp_path / "r.html"], capsys)
    assert code == 0 and "no requests for host" in err


def test_a_host_that_is_absent_lists_the_hosts_present(tmp_path, capsys):
    wh = vhost_warehouse(tmp_path, ["a.example", "a.example", "b.example"])
    code, _, err = cli(["stats", "--warehouse", wh, "--host", "c.example"], capsys)
    assert code == 0 and "a.example (2), b.example (1)" in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "accesslog", "parse", "--log-format", "timed_combined", LOG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    proc.stdout.readline()
    proc.stdout.close()                                       # `| head -n 1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "internal error" not in err and "Traceback" not in err


# -- every command, generated argument lists: never an internal error ------------------------------

_VALUES = ["0", "-1", "1", "7d", "-7d", "today", "yesterday", "x", "", "2026-11-20", "2026-13-40", "/nonexistent",
           "1e309", "nan", "../..", "%s", "a=b", "-", "auto", "combined", "json", "csv", "hour", "s3://no-such-bucket/x"]
_WRONG = ["--retension-days=1", "--form", "--jsn", "--runner=NoSuchRunner", "--direct_num_workers=x",
          "--direct_num_workers=1", "--runner=FnApiRunner", "--", "-x", "--", "--=", "--warehouse="]
# Flags that would start a long-running job (a stream that is valid runs until cancelled), and serve's
# --bind (with a token it would listen beyond loopback; tests/test_serve.py checks its refusal).
_NEVER = {"--bind", "--file-pattern", "--file_pattern", "--topic", "--subscription", "--bootstrap-servers",
          "--bootstrap_servers", "--kafka-expansion-service", "--kafka_expansion_service"}


def _commands() -> dict[tuple[str, ...], list[str]]:
    """Each (sub)command -> its flags, read off the parser itself."""
    out = {}

    def walk(parser, path):
        subs = parser._subparsers._group_actions if parser._subparsers else []
        if not subs:
            out[path] = [o for a in parser._actions for o in a.option_strings
                         if o.startswith("--") and o not in _NEVER and o not in ("--help", "--version")]
        for action in subs:
            for name, child in action.choices.items():
                walk(child, path + (name,))
    walk(build_parser(), ())
    return out


COMMANDS = _commands()


def _valid_start(path: tuple[str, ...], root: Path, warehouse: Path) -> list[str]:
    """A working command line of `path` to add generated arguments to (so they meet real runs too)."""
    wh, keys = str(warehouse), str(root / "keys")
    return {("run",): [LOG, "--warehouse", str(root / "new"), "--keys", keys, "--now", SAMPLE_NOW],
            ("parse",): [LOG, "--limit", "3"],
            ("follow",): [LOG, "--warehouse", str(root / "followed"), "--keys", keys],
            ("stats",): ["--warehouse", wh], ("serve",): ["--warehouse", wh, "--port", "0"], ("report",): ["--warehouse", wh, "-o", str(root / "r.html")],
            ("retention",): ["--warehouse", wh, "--days", "36500", "--now", SAMPLE_NOW],
            ("subject", "export"): ["--warehouse", wh, "--keys", keys, "--ip", "192.0.2.1"],
            ("subject", "erase"): ["--warehouse", wh, "--keys", keys, "--ip", "192.0.2.1", "--dry-run"],
            }.get(path, ["--keys", keys] if path[0] == "keys" else [])


@st.composite
def command_lines(draw, root: Path, warehouse: Path):
    path = draw(st.sampled_from(sorted(COMMANDS)))
    paths = [str(warehouse), str(root / "keys"), LOG, str(root / "out.html"), str(root / "new")]
    flag, value = st.sampled_from(COMMANDS[path]), st.sampled_from(_VALUES + paths)
    part = st.one_of(st.tuples(flag, value), st.tuples(flag), st.tuples(value), st.tuples(st.sampled_from(_WRONG)))
    start = _valid_start(path, root, warehouse) if draw(st.booleans()) else []
    argv = [*path, *start, *(t for p in draw(st.lists(part, max_size=3)) for t in p)]
    if path == ("follow",):
        argv.append("--once")
    return argv


def test_the_command_tree_is_covered():
    assert {p[0] for p in COMMANDS} >= {"run", "parse", "follow", "stream", "keys", "subject", "retention",
                                        "report", "stats", "serve"}


@pytest.fixture(scope="module")
def scratch_warehouse(sample_warehouse, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the samples' warehouse and its keys, for commands that change what they are given."""
    root = tmp_path_factory.mktemp("argv")
    shutil.copytree(sample_warehouse, root / "wh")
    shutil.copy(sample_warehouse.parent / "keys", root / "keys")
    return root, root / "wh"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_no_argument_list_ends_in_an_internal_error(data, scratch_warehouse, capsys, monkeypatch):
    root, warehouse = scratch_warehouse
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"not a log line\n")))
    for var in ("ACCESSLOG_KEYS", "ACCESSLOG_MASTER_KEY", "ACCESSLOG_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    # a serve that gets as far as listening builds its page once instead of serving until Ctrl-C
    monkeypatch.setattr("accesslog.serve.ReportServer.serve_forever", lambda self, poll_interval=0.5: self.source.page(""))
    argv = data.draw(command_lines(root, warehouse))
    code, _, err = cli(argv, capsys)
    event(f"{argv[0]} exit {code}")
    assert "internal error" not in err, (argv, err)
    assert code in (0, 1, 2, 4), (argv, code, err)


def test_run_help_lists_every_preset(capsys):
    from transforms.formats import preset_names
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    missing = [name for name in preset_names() if name not in text]
    assert not missing


def test_report_onto_a_folder_is_a_user_error(sample_warehouse, tmp_path, capsys):
    """Found by the property test: `report -o ../..` (a folder) ended in an internal error."""
    code, _, err = cli(["report", "--warehouse", sample_warehouse, "-o", tmp_path], capsys)
    assert code == 2 and "is a folder" in err


def test_stats_help_names_every_report(capsys):
    from accesslog.stats import DEFAULT_REPORTS, REPORTS, SCANNING_REPORTS
    with pytest.raises(SystemExit):
        main(["stats", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("Default: ", 1)[1].split(" --granularity", 1)[0]
    default, by_name = listed.split("; by name only (they read the files each time): ")
    assert [n.strip() for n in default.split(",")] == list(DEFAULT_REPORTS)
    assert [n.strip() for n in by_name.split(",")] == list(SCANNING_REPORTS)
    assert set(DEFAULT_REPORTS) | set(SCANNING_REPORTS) == set(REPORTS)
