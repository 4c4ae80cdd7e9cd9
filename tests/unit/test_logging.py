"""Logging: JSON lines, redaction (messages and tracebacks), correlation ids, rotation set-up."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging as std_logging
import os
import time
from pathlib import Path

import pytest
from loguru import logger

from isengard_desktop.core import logging as applog
from isengard_desktop.core.logging import (
    REDACTED, add_redaction_value, correlation, current_correlation_id, new_correlation_id,
    redact, setup_logging, shutdown_logging,
)
from isengard_desktop.core.paths import AppPaths, resolve_paths

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWx12"
SK = "sk-" + "proj-Zq8Xy7Wv6Ut5Sr4Qp3"
WANDB = "0123456789abcdef0123456789abcdef01234567"
GIT_HASH = "fc200bf9d1c4e5a6b7c8d9e0f1a2b3c4d5e6f7a8"
PASSWORD = "hunter2-Orthanc"
TOKEN = "tok_Saruman_99"
EXACT = "correct-horse-battery-staple"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "isengard"))
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "frodo"))
    p = resolve_paths().ensure()
    yield p
    shutdown_logging()
    applog._clear_redaction_values()


def read_records(paths: AppPaths) -> list[dict]:
    records = []
    for file in sorted(paths.app_logs.glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            records.append(json.loads(line))
    return records


def raw_log_text(paths: AppPaths) -> str:
    return "".join(f.read_text(encoding="utf-8") for f in paths.app_logs.glob("*"))


# -- redact() --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, secret", [
    (f"using {HF} for download", HF),
    (f"key={SK}", SK),
    (f"WANDB_API_KEY={WANDB}", WANDB),
    (f"api_key: {WANDB}", WANDB),
    (f'{{"token": "{WANDB}"}}', WANDB),
    (f"wandb key {WANDB}", WANDB),
    (f"https://civitai.com/api/download/models/1?token={TOKEN}&type=Model", TOKEN),
    (f"password={PASSWORD} user=gandalf", PASSWORD),
    (f"secret={PASSWORD}", PASSWORD),
    (f"HF_TOKEN={TOKEN}", TOKEN),
    (f"Authorization: Bearer {TOKEN}xyz", TOKEN),
    (f"headers={{'Authorization': 'Bearer {TOKEN}'}}", TOKEN),
])
def test_redact_masks_known_secret_shapes(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


def test_redact_keeps_names_and_surrounding_text() -> None:
    assert redact(f"password={PASSWORD} user=gandalf") == f"password={REDACTED} user=gandalf"
    assert redact(f"?token={TOKEN}&type=Model") == f"?token={REDACTED}&type=Model"


def test_redact_keeps_git_hash_and_ordinary_text() -> None:
    text = f"trainer at commit {GIT_HASH}, 2000 steps, max_tokens=77, tokens: 75"
    assert redact(text) == text


def test_redact_home_folder_becomes_tilde(paths: AppPaths) -> None:
    home = str(Path.home())
    assert redact(f"opened {home}/photos/a.jpg") == "opened ~/photos/a.jpg"
    # only at a path boundary: another user whose name starts the same is left alone
    assert redact(f"{home}x/photos") == f"{home}x/photos"


def test_redaction_values_are_masked_once_registered(paths: AppPaths) -> None:
    assert redact(f"value {EXACT}") == f"value {EXACT}"
    add_redaction_value(EXACT)
    assert redact(f"value {EXACT}!") == f"value {REDACTED}!"
    add_redaction_value("ab")        # too short to mask safely: ignored
    assert redact("about abc") == "about abc"


# -- correlation ids -------------------------------------------------------------------------

def test_correlation_ids_nest_and_restore() -> None:
    assert current_correlation_id() is None
    cid = new_correlation_id()
    assert len(cid) == 12 and int(cid, 16) >= 0
    assert new_correlation_id() != cid
    with correlation() as outer:
        assert current_correlation_id() == outer
        with correlation() as inner_same:
            assert inner_same == outer            # a nested block continues the action
        with correlation("explicit01") as inner:
            assert inner == "explicit01"
            assert current_correlation_id() == "explicit01"
        assert current_correlation_id() == outer
    assert current_correlation_id() is None


def test_correlation_follows_asyncio_tasks() -> None:
    async def child() -> str | None:
        await asyncio.sleep(0)
        return current_correlation_id()

    async def main() -> tuple[str, str | None]:
        with correlation() as cid:
            task = asyncio.ensure_future(child())
        return cid, await task

    cid, seen = asyncio.run(main())
    assert seen == cid


# -- the log file ----------------------------------------------------------------------------

def test_records_are_json_lines_with_required_fields(paths: AppPaths) -> None:
    setup_logging(paths)
    with correlation() as cid:
        logger.info("inside the action")
    logger.info("outside")
    records = read_records(paths)
    assert [r["message"] for r in records] == ["inside the action", "outside"]
    first = records[0]
    for key in ("time", "level", "message", "name", "module", "function", "line",
                "correlation_id"):
        assert key in first
    assert first["level"] == "INFO"
    assert first["function"] == "test_records_are_json_lines_with_required_fields"
    assert first["correlation_id"] == cid
    assert records[1]["correlation_id"] is None
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None
    assert "exception" not in first


def test_secrets_never_reach_the_log_file(paths: AppPaths) -> None:
    setup_logging(paths, level="DEBUG")
    add_redaction_value(EXACT)
    home = str(Path.home())
    logger.info(f"download with {HF} and {SK}")
    logger.debug(f"env WANDB_API_KEY={WANDB} password={PASSWORD}")
    logger.warning(f"fetch https://civitai.com/api?token={TOKEN}&x=1")
    logger.info("the user typed {}", EXACT)
    logger.info(f"thumbnail {home}/Pictures/a.jpg")
    logger.info(f"trainer built from commit {GIT_HASH}")
    logger.bind(job_env={"HF_TOKEN": HF}).info("job env bound")
    try:
        try:
            raise KeyError(f"inner {EXACT} password={PASSWORD}")
        except KeyError as inner:
            # the secret is literally in this source line, so it also shows in the traceback
            raise RuntimeError(f"upload failed for hf_AbCdEfGhIjKlMnOpQrStUvWx12 {SK} "
                               f"WANDB_API_KEY={WANDB} under {home}/x") from inner
    except RuntimeError:
        logger.exception("Upload failed")

    text = raw_log_text(paths)
    for secret in (HF, SK, WANDB, PASSWORD, TOKEN, EXACT, home):
        assert secret not in text, secret
    records = read_records(paths)          # every line still parses
    assert len(records) == 8
    assert any(GIT_HASH in r["message"] for r in records)   # a git hash is kept
    failed = records[-1]
    assert failed["level"] == "ERROR"
    assert "Traceback" in failed["exception"]
    assert "RuntimeError" in failed["exception"] and "KeyError" in failed["exception"]
    assert REDACTED in failed["exception"]
    assert "~/x" in failed["exception"]
    assert records[4]["message"] == "thumbnail ~/Pictures/a.jpg"


def test_stdlib_logging_warnings_are_routed_and_redacted(paths: AppPaths) -> None:
    setup_logging(paths)
    std_logging.getLogger("some.library").warning("retrying with password=%s", PASSWORD)
    std_logging.getLogger("some.library").info("chatty info is not routed")
    records = read_records(paths)
    assert len(records) == 1
    assert records[0]["level"] == "WARNING"
    assert records[0]["message"] == f"retrying with password={REDACTED}"
    assert records[0]["function"] == "test_stdlib_logging_warnings_are_routed_and_redacted"


def test_file_name_rotation_and_retention(paths: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_add = logger.add

    def spy_add(sink, **kwargs):
        calls.append((sink, kwargs))
        return real_add(sink, **kwargs)

    monkeypatch.setattr(logger, "add", spy_add)
    setup_logging(paths)
    logger.info("hello")
    today = dt.date.today().strftime("%Y-%m-%d")
    assert (paths.app_logs / f"isengard_{today}.jsonl").is_file()
    file_calls = [kw for sink, kw in calls if isinstance(sink, str)]
    assert len(file_calls) == 1
    kw = file_calls[0]
    assert kw["rotation"] == "00:00"
    assert kw["retention"] == "30 days"
    assert kw["encoding"] == "utf-8"
    assert kw["enqueue"] is False and kw["diagnose"] is False and kw["backtrace"] is False
    assert "serialize" not in kw or kw["serialize"] is False


def test_setup_prunes_logs_older_than_thirty_days(paths: AppPaths) -> None:
    old = paths.app_logs / "isengard_2000-01-01.jsonl"
    recent = paths.app_logs / "isengard_2000-01-02.jsonl"
    other = paths.app_logs / "notes.txt"
    for f in (old, recent, other):
        f.write_text("{}\n", encoding="utf-8")
    long_ago = time.time() - 31 * 86400
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    setup_logging(paths)
    assert not old.exists()
    assert recent.exists()
    assert other.exists()          # only our own log files are pruned


def test_setup_twice_does_not_duplicate_and_drops_default_handler(paths: AppPaths,
                                                                  capsys) -> None:
    setup_logging(paths)
    setup_logging(paths)
    with pytest.raises(ValueError):
        logger.remove(0)           # loguru's default stderr handler is gone
    logger.info("once")
    assert [r["message"] for r in read_records(paths)] == ["once"]
    assert "once" not in capsys.readouterr().err


def test_console_output_is_redacted(paths: AppPaths, capsys) -> None:
    setup_logging(paths, console=True)
    try:
        raise ValueError(f"bad token={TOKEN}")
    except ValueError:
        logger.exception(f"console {HF}")
    err = capsys.readouterr().err
    assert "console" in err and "ValueError" in err
    assert HF not in err and TOKEN not in err
    assert REDACTED in err


def test_shutdown_closes_the_file(paths: AppPaths) -> None:
    setup_logging(paths)
    logger.info("before")
    shutdown_logging()
    logger.info("after")
    assert [r["message"] for r in read_records(paths)] == ["before"]
