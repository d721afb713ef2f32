"""Keystore: period keys in a 0600 file created on first use, or derived from a master secret."""
import json
import multiprocessing
import os
import pickle
import stat
from datetime import date

import pytest

from pipelines.entry import flag_name
from schemas.errors import AccesslogError, SettingError
from storage.keystore import KEYS_ENV, MASTER_ENV, Keystore, period_label

MASTER = "m" * 16 + "0123456789abcdef"   # 32 characters
DAY = date(2026, 11, 20)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- creation -------------------------------------------------------------------------------


def test_created_0600_on_first_use_in_a_new_folder(tmp_path):
    path = tmp_path / "new" / "nested" / "keys.json"
    ks = Keystore(path)
    assert ks.created
    assert path.is_file()
    assert mode(path) == 0o600
    assert mode(path.parent) & 0o077 == 0          # the folder it made is private too
    doc = json.loads(path.read_text())
    assert doc["keys"] == {}


def test_folder_path_holds_keys_json(tmp_path):
    Keystore(str(tmp_path / "keydir") + os.sep)
    assert (tmp_path / "keydir" / "keys.json").is_file()
    (tmp_path / "existing").mkdir()
    ks = Keystore(tmp_path / "existing")
    assert ks.path == (tmp_path / "existing" / "keys.json").resolve()


def test_key_is_created_once_and_reused_across_instances(tmp_path):
    path = tmp_path / "keys.json"
    first = Keystore(path)
    key_id, secret = first.key_for_day(DAY)
    assert len(secret) == 32
    second = Keystore(path)
    assert not second.created
    assert second.key_for_day(DAY) == (key_id, secret)
    assert mode(path) == 0o600                     # still private after the key was added


def test_days_get_different_keys(tmp_path):
    ks = Keystore(tmp_path / "keys.json")
    (id1, s1), (id2, s2) = ks.key_for_day(date(2026, 11, 20)), ks.key_for_day(date(2026, 11, 21))
    assert id1 != id2 and s1 != s2
    assert id1.startswith("2026-11-20:") and id2.startswith("2026-11-21:")


# -- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2026, 11, 20), date(2021, 1, 3), date(2024, 12, 30)])
def test_period_labels(day):
    assert period_label(day, "day") == day.isoformat()
    assert period_label(day, "week") == day.strftime("%G-W%V")    # ISO week, also across new year
    assert period_label(day, "month") == day.strftime("%Y-%m")
    assert period_label(day, "none") == "all"


def test_week_period_shares_a_key_within_the_iso_week(tmp_path):
    ks = Keystore(tmp_path / "keys.json", period="week")
    monday, sunday, next_monday = date(2026, 11, 16), date(2026, 11, 22), date(2026, 11, 23)
    assert ks.key_for_day(monday) == ks.key_for_day(sunday)
    assert ks.key_for_day(monday) != ks.key_for_day(next_monday)
    assert ks.key_for_day(monday)[0].startswith("2026-W47:")


def test_none_period_has_one_key(tmp_path):
    ks = Keystore(tmp_path / "keys.json", period="none")
    assert ks.key_for_day(date(2000, 1, 1)) == ks.key_for_day(date(2030, 6, 1))


def test_unknown_period(tmp_path):
    with pytest.raises(AccesslogError, match="unknown key period"):
        Keystore(tmp_path / "keys.json", period="hour")


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604])
def test_refuses_a_keystore_others_can_read(tmp_path, bad_mode):
    path = tmp_path / "keys.json"
    Keystore(path).key_for_day(DAY)
    os.chmod(path, bad_mode)
    with pytest.raises(AccesslogError) as e:
        Keystore(path)
    assert "chmod 600" in str(e.value)
    assert str(path) in str(e.value)


def test_refuses_a_file_that_is_not_a_keystore(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"hello": "world"}))
    os.chmod(path, 0o600)
    with pytest.raises(AccesslogError, match="not an accesslog keystore"):
        Keystore(path)


def test_refuses_a_corrupt_keystore(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    os.chmod(path, 0o600)
    with pytest.raises(AccesslogError, match="cannot read keystore"):
        Keystore(path)


def test_refuses_a_keystore_inside_the_warehouse(tmp_path):
    with pytest.raises(AccesslogError, match="inside the warehouse"):
        Keystore(tmp_path / "wh" / "keys" / "keys.json", outside=tmp_path / "wh")
    assert not (tmp_path / "wh").exists()          # refused before creating anything


def test_no_path_and_no_env(monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv(MASTER_ENV, raising=False)
    with pytest.raises(AccesslogError, match="no keystore"):
        Keystore.from_options(None)
    with pytest.raises(SettingError) as err:
        Keystore(None)
    assert "--keys" in err.value.render(flag_name)


def test_keys_path_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(KEYS_ENV, str(tmp_path / "env-keys.json"))
    monkeypatch.delenv(MASTER_ENV, raising=False)
    ks = Keystore.from_options(None)
    assert ks.path == (tmp_path / "env-keys.json").resolve()
    assert ks.path.is_file()


# -- master secret --------------------------------------------------------------------------


def test_master_secret_derives_stable_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = Keystore(None, master=MASTER), Keystore(None, master=MASTER)
    assert a.key_for_day(DAY) == b.key_for_day(DAY)
    key_id, secret = a.key_for_day(DAY)
    assert len(secret) == 32
    assert key_id.startswith("2026-11-20:")
    assert a.key_for_day(date(2026, 11, 21)) != a.key_for_day(DAY)
    assert Keystore(None, master=MASTER[::-1]).key_for_day(DAY) != a.key_for_day(DAY)
    assert list(tmp_path.iterdir()) == []          # nothing written


def test_master_secret_from_env(monkeypatch):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.setenv(MASTER_ENV, MASTER)
    assert Keystore.from_options(None).key_for_day(DAY) == Keystore(None, master=MASTER).key_for_day(DAY)


def test_master_secret_too_short():
    with pytest.raises(AccesslogError, match="too short"):
        Keystore(None, master="x" * 31)


def test_pickled_keystore_carries_no_secrets(tmp_path):
    ks = Keystore(tmp_path / "keys.json")
    _, secret = ks.key_for_day(DAY)
    blob = pickle.dumps(ks)
    assert secret not in blob
    assert pickle.loads(blob).key_for_day(DAY) == ks.key_for_day(DAY)


# -- concurrency ----------------------------------------------------------------------------


def _ask_for_key(path, barrier, results):
    ks = Keystore(path)
    barrier.wait()
    key_id, secret = ks.key_for_day(DAY)
    results.put((key_id, secret.hex()))


def test_concurrent_processes_agree_on_a_new_key(tmp_path):
    path = str(tmp_path / "keys.json")
    Keystore(path)                                 # the keystore exists; the day key does not
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_ask_for_key, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(got)) == 1
    key_id, secret_hex = got[0]
    assert Keystore(path).key_for_day(DAY) == (key_id, bytes.fromhex(secret_hex))
    assert list(json.loads(open(path).read())["keys"]) == ["2026-11-20"]


def _create_and_ask(path, barrier, results):
    barrier.wait()
    _ask_for_key(path, _NoBarrier(), results)


class _NoBarrier:
    def wait(self):
        pass


def test_concurrent_processes_creating_the_keystore(tmp_path):
    path = str(tmp_path / "fresh" / "keys.json")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_create_and_ask, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(got)) == 1
    assert mode(path) == 0o600


def test_master_secret_is_not_pickled_and_is_read_again_on_the_worker(monkeypatch):
    import pickle
    master = "m" * 40
    keystore = Keystore(None, master=master)
    label_key = keystore.key("2026-11-20")
    blob = pickle.dumps(keystore)
    assert master.encode() not in blob and label_key[1] not in blob
    monkeypatch.setenv("ACCESSLOG_MASTER_KEY", master)
    assert pickle.loads(blob).key("2026-11-20") == label_key
    monkeypatch.delenv("ACCESSLOG_MASTER_KEY")
    with pytest.raises(AccesslogError, match="not set on this worker"):
        pickle.loads(blob)
