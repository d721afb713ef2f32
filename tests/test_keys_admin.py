"""accesslog keys list|rotate|shred: periods, tombstones, one period per keystore, never a secret shown."""
from __future__ import annotations

import argparse
import base64
import json
import os
import stat
from datetime import date, datetime, timezone

import pytest

from accesslog.cli.admin import register_keys
from pipelines.entry import flag_name
from schemas.errors import AccesslogError, SettingError
from storage.keystore import KEYS_ENV, MASTER_ENV, KeyShreddedError, Keystore, period_bounds

UTC = timezone.utc
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def secret_spellings(path) -> list[str]:
    """Every way a secret of the keystore could appear in output: base64, hex."""
    out = []
    for entry in json.loads(path.read_text())["keys"].values():
        out += [entry["secret"], base64.b64decode(entry["secret"]).hex()]
    return out


def cli(argv, capsys=None):
    parser = argparse.ArgumentParser(prog="accesslog")
    register_keys(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", *argv])
    return args.func(args)


@pytest.fixture
def keys(tmp_path):
    ks = Keystore(tmp_path / "keys.json")
    for day in (date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)):
        ks.key_for_day(day)
    return ks


# -- periods ----------------------------------------------------------------------------


def test_period_bounds():
    assert period_bounds("2026-11-20", "day") == (date(2026, 11, 20), date(2026, 11, 20))
    assert period_bounds("2026-W47", "week") == (date(2026, 11, 16), date(2026, 11, 22))
    assert period_bounds("2020-W53", "week") == (date(2020, 12, 28), date(2021, 1, 3))
    assert period_bounds("2026-12", "month") == (date(2026, 12, 1), date(2026, 12, 31))
    assert period_bounds("2028-02", "month") == (date(2028, 2, 1), date(2028, 2, 29))
    assert period_bounds("all", "none") == (date.min, date.max)
    with pytest.raises(AccesslogError, match="damaged"):
        period_bounds("2026-11", "day")


# -- list -------------------------------------------------------------------------------


def test_list_shows_periods_and_never_secrets(keys, capsys):
    rows = keys.list()
    assert [r["label"] for r in rows] == ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
    assert set(rows[0]) == {"label", "key_id", "created", "shredded", "shredded_at"}
    assert all(r["key_id"].startswith(r["label"] + ":") and not r["shredded"] for r in rows)
    dumped = json.dumps(rows)
    assert not any(s in dumped for s in secret_spellings(keys.path))
    for argv in (["list", "--keys", str(keys.path)], ["list", "--keys", str(keys.path), "--json"],
                 ["list", "--keys", str(keys.path), "--format", "csv"]):
        assert cli(argv) == 0
        out = capsys.readouterr().out
        assert "2026-11-19" in out
        assert not any(s in out for s in secret_spellings(keys.path))
    cli(["list", "--keys", str(keys.path), "--json"])
    assert [r["label"] for r in json.loads(capsys.readouterr().out)["keys"]] == [r["label"] for r in rows]


def test_list_does_not_create_a_keystore(tmp_path, monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    with pytest.raises(AccesslogError, match="does not exist"):
        cli(["list", "--keys", str(tmp_path / "typo.json")])
    assert not (tmp_path / "typo.json").exists()
    with pytest.raises(AccesslogError, match="no keystore"):
        cli(["list"])


def test_keys_path_from_the_environment(keys, monkeypatch, capsys):
    monkeypatch.setenv(KEYS_ENV, str(keys.path))
    cli(["list", "--json"])
    assert len(json.loads(capsys.readouterr().out)["keys"]) == 4


def test_master_secret_keys_cannot_be_listed_rotated_or_shredded():
    master = Keystore(None, master="m" * 40)
    for action in (master.list, master.rotate, lambda: master.shred(date(2026, 1, 1))):
        with pytest.raises(AccesslogError, match=MASTER_ENV):
            action()


# -- rotate -----------------------------------------------------------------------------


def test_rotate_creates_the_current_period_key_once(tmp_path, capsys):
    ks = Keystore(tmp_path / "keys.json")
    first = ks.rotate(NOW)
    assert first["label"] == "2026-11-20" and first["created"]
    again = Keystore(tmp_path / "keys.json").rotate(NOW)
    assert again == {**first, "created": False}
    assert Keystore(tmp_path / "keys.json").key_for_day(date(2026, 11, 20))[0] == first["key_id"]
    assert mode(tmp_path / "keys.json") == 0o600


def test_cli_rotate_creates_a_keystore_with_its_period(tmp_path, capsys):
    path = tmp_path / "new" / "keys.json"
    assert cli(["rotate", "--keys", str(path), "--key-period", "week", "--now", "2026-11-20T10:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2026-W47: key 2026-W47:") and "created" in out
    assert json.loads(path.read_text())["period"] == "week"
    assert mode(path) == 0o600
    cli(["rotate", "--keys", str(path), "--now", "2026-11-22T23:00:00Z"])      # period from the keystore
    assert "already present" in capsys.readouterr().out
    assert not any(s in out for s in secret_spellings(path))


def test_mixing_periods_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    Keystore(path, period="week").key_for_day(date(2026, 11, 20))
    with pytest.raises(SettingError) as err:
        Keystore(path)
    assert "rotates keys per week, not per day: pass --key-period week" in err.value.render(flag_name)
    with pytest.raises(AccesslogError, match="per week, not per month"):
        cli(["rotate", "--keys", str(path), "--key-period", "month"])
    assert Keystore(path, period=None).period == "week"
    assert list(json.loads(path.read_text())["keys"]) == ["2026-W47"]


def test_period_none_adopts_a_new_keystore_as_day(tmp_path):
    ks = Keystore(tmp_path / "keys.json", period=None)
    assert ks.period == "day" and json.loads((tmp_path / "keys.json").read_text())["period"] == "day"


# -- shred ------------------------------------------------------------------------------


def test_shred_deletes_periods_that_end_before_the_date_and_leaves_tombstones(keys):
    key_ids = {r["label"]: r["key_id"] for r in keys.list()}
    assert keys.shred(date(2026, 11, 19), now=NOW) == ["2026-11-17", "2026-11-18"]
    doc = json.loads(keys.path.read_text())
    assert sorted(doc["keys"]) == ["2026-11-19", "2026-11-20"]
    tomb = doc["shredded"]["2026-11-17"]
    assert set(tomb) == {"shredded_at", "id", "created"} and tomb["id"] == key_ids["2026-11-17"]
    # the real time of shredding (not --now), on or after the key's creation
    assert datetime.fromisoformat(tomb["shredded_at"]) >= datetime.fromisoformat(tomb["created"])
    assert "secret" not in json.dumps(doc["shredded"])
    assert mode(keys.path) == 0o600
    rows = {r["label"]: r for r in keys.list()}
    assert rows["2026-11-17"]["shredded"] and rows["2026-11-17"]["shredded_at"] == tomb["shredded_at"]
    assert not rows["2026-11-19"]["shredded"]
    assert keys.shred(date(2026, 11, 19), now=NOW) == []          # idempotent


def test_a_shredded_period_is_never_recreated(keys):
    _, old_secret = keys.key_for_day(date(2026, 11, 17))
    keys.shred(date(2026, 11, 18), now=NOW)
    for ks in (keys, Keystore(keys.path)):                        # this instance (cache dropped) and a new one
        with pytest.raises(KeyShreddedError) as e:
            ks.key_for_day(date(2026, 11, 17))
        shredded_at = ks.shredded()["2026-11-17"]
        assert str(e.value).startswith(f"key for period 2026-11-17 was shredded at {shredded_at}: ")
        assert e.value.label == "2026-11-17"
        assert ks.existing_key("2026-11-17") is None
    assert "2026-11-17" not in json.loads(keys.path.read_text())["keys"]
    assert old_secret.hex() not in keys.path.read_text()
    assert base64.b64encode(old_secret).decode() not in keys.path.read_text()
    assert Keystore(keys.path).key_for_day(date(2026, 11, 21))   # later periods are still created


def test_shredding_the_current_period_is_refused(keys):
    with pytest.raises(AccesslogError, match="after today"):
        keys.shred(date(2026, 11, 21), now=NOW)
    assert keys.shred(date(2026, 11, 20), now=NOW) == ["2026-11-17", "2026-11-18", "2026-11-19"]


def test_shred_dry_run_changes_nothing(keys):
    before = keys.path.read_bytes()
    assert keys.shred(date(2026, 11, 20), now=NOW, dry_run=True) == ["2026-11-17", "2026-11-18", "2026-11-19"]
    assert keys.path.read_bytes() == before


def test_month_and_none_periods(tmp_path):
    month = Keystore(tmp_path / "m.json", period="month")
    month.key_for_day(date(2026, 10, 31))
    month.key_for_day(date(2026, 11, 1))
    assert month.shred(date(2026, 11, 20), now=NOW) == ["2026-10"]       # November has not ended
    none = Keystore(tmp_path / "n.json", period="none")
    none.key_for_day(date(2020, 1, 1))
    assert none.shred(date(2026, 11, 20), now=NOW) == []                 # a single key never ends


def test_cli_shred(keys, capsys):
    assert cli(["shred", "--keys", str(keys.path), "--before", "2026-11-19", "--now", "2026-11-20T10:30:00Z",
                "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "would shred 2 key period(s): 2026-11-17, 2026-11-18"
    assert cli(["shred", "--keys", str(keys.path), "--before", "2026-11-19", "--now", "2026-11-20T10:30:00Z"]) == 0
    assert capsys.readouterr().out.strip() == "shredded 2 key period(s): 2026-11-17, 2026-11-18"
    cli(["shred", "--keys", str(keys.path), "--before", "2026-11-19", "--now", "2026-11-20T10:30:00Z"])
    assert "nothing shredded" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["shred", "--keys", str(keys.path), "--before", "someday"])


def test_pipeline_pseudonymization_refuses_a_shredded_day(keys):
    """What a batch run meets with log lines of a shredded period: a clear error, never a new key."""
    import pyarrow as pa

    import schemas
    from transforms.pseudonymize import pseudonymize_records

    keys.shred(date(2026, 11, 18), now=NOW)
    old = pa.table({"received_at": pa.array([datetime(2026, 11, 17, 12, tzinfo=UTC)], schemas.TIMESTAMP),
                    "_client_ip": ["203.0.113.7"], "_remote_user": pa.array([None], pa.string())})
    with pytest.raises(KeyShreddedError, match="2026-11-17"):
        pseudonymize_records(old, Keystore(keys.path))
    assert "2026-11-17" not in json.loads(keys.path.read_text())["keys"]


def test_check_window_before_a_run(keys):
    keys.shred(date(2026, 11, 19), now=NOW)                      # 17 and 18 shredded
    keys.check_window(date(2026, 11, 19))                        # a window from the 19th on is fine
    with pytest.raises(AccesslogError, match="key period 2026-11-18 was shredded .* after 2026-11-18"):
        keys.check_window(date(2026, 11, 18))
    Keystore(None, master="m" * 40).check_window(date(2000, 1, 1))   # nothing is ever shredded there
