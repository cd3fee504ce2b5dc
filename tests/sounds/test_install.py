"""``ivrpay sounds install``: the shipped prompts into a sounds directory, admins' files kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ivrpay.cli import main
from ivrpay.config import SOUNDS_DIR
from ivrpay.sounds.catalogue import load_prompts, prompt_file
from ivrpay.sounds.install import MANIFEST, InstallError, install_prompts, read_manifest


def _source(base: Path) -> Path:
    """A small shipped folder: two prompts in two languages."""
    src = base / "shipped"
    (src / "ja" / "ivrpay").mkdir(parents=True)
    (src / "en" / "ivrpay").mkdir(parents=True)
    (src / "prompts.csv").write_text("id,ja,en\nhello,こんにちは,hello\nbye,さようなら,bye\n")
    for lang in ("ja", "en"):
        for pid in ("hello", "bye"):
            prompt_file(src, lang, pid).write_bytes(f"RIFF {lang} {pid} v1".encode())
    return src


def test_installs_every_shipped_prompt_by_language(tmp_path: Path) -> None:
    target = tmp_path / "asterisk-sounds"
    report = install_prompts(SOUNDS_DIR, target, ["ja", "en"])
    ids = list(load_prompts(SOUNDS_DIR))
    assert len(report.new) == 1 + 2 * len(ids) and not report.kept
    for lang in ("ja", "en"):
        for pid in ids:
            shipped = prompt_file(SOUNDS_DIR, lang, pid).read_bytes()
            assert prompt_file(target, lang, pid).read_bytes() == shipped
    assert load_prompts(target) == load_prompts(SOUNDS_DIR)  # usable as IVRPAY_SOUNDS_DIR
    recorded = read_manifest(target)
    wav = "ja/ivrpay/" + ids[0] + ".wav"
    assert recorded[wav] == hashlib.sha256((target / wav).read_bytes()).hexdigest()
    again = install_prompts(SOUNDS_DIR, target, ["ja", "en"])
    assert again.new == again.updated == again.kept == []
    assert len(again.unchanged) == len(report.new)


def test_a_replaced_prompt_is_kept_unless_forced(tmp_path: Path) -> None:
    src, target = _source(tmp_path), tmp_path / "sounds"
    install_prompts(src, target, ["ja", "en"])
    mine = prompt_file(target, "ja", "hello")
    mine.write_bytes(b"RIFF the admin's recording")
    report = install_prompts(src, target, ["ja", "en"])
    assert report.kept == ["ja/ivrpay/hello.wav"]
    assert mine.read_bytes() == b"RIFF the admin's recording"
    # A later install still knows it as the admin's (the manifest kept the shipped digest).
    assert install_prompts(src, target, ["ja"]).kept == ["ja/ivrpay/hello.wav"]

    forced = install_prompts(src, target, ["ja", "en"], force=True)
    assert forced.overwritten == ["ja/ivrpay/hello.wav"] and not forced.kept
    assert forced.backups == ["ja/ivrpay-backup/hello.wav"]
    assert mine.read_bytes() == b"RIFF ja hello v1"
    assert (target / "ja" / "ivrpay-backup" / "hello.wav").read_bytes() == (
        b"RIFF the admin's recording"
    )


def test_an_older_shipped_prompt_is_updated(tmp_path: Path) -> None:
    src, target = _source(tmp_path), tmp_path / "sounds"
    install_prompts(src, target, ["ja", "en"])
    prompt_file(src, "en", "bye").write_bytes(b"RIFF en bye v2")  # the next release
    report = install_prompts(src, target, ["ja", "en"])
    assert report.updated == ["en/ivrpay/bye.wav"] and not report.kept
    assert prompt_file(target, "en", "bye").read_bytes() == b"RIFF en bye v2"


def test_a_file_there_before_any_install_counts_as_the_admins(tmp_path: Path) -> None:
    src, target = _source(tmp_path), tmp_path / "sounds"
    prompt_file(target, "en", "hello").parent.mkdir(parents=True)
    prompt_file(target, "en", "hello").write_bytes(b"RIFF recorded by hand")
    report = install_prompts(src, target, ["en"])
    assert report.kept == ["en/ivrpay/hello.wav"]
    assert report.new == ["prompts.csv", "en/ivrpay/bye.wav"]
    assert not (target / "ja").exists()  # only the languages asked for
    assert (target / MANIFEST).is_file()


def test_a_language_not_shipped_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="'fr'"):
        install_prompts(_source(tmp_path), tmp_path / "sounds", ["fr"])
    assert not (tmp_path / "sounds").exists()


def test_cli_names_the_prompts_it_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sounds"
    assert main(["sounds", "install", str(target), "--lang", "en"]) == 0
    first = capsys.readouterr().out
    assert "(en)" in first and " 0 kept" in first
    replaced = next(iter(load_prompts(SOUNDS_DIR)))
    prompt_file(target, "en", replaced).write_bytes(b"RIFF mine")
    assert main(["sounds", "install", str(target), "--lang", "en"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert " 1 kept" in out[0]
    assert out[1].startswith(f"kept en/ivrpay/{replaced}.wav") and "--force" in out[1]
    assert main(["sounds", "install", str(target), "--lang", "xx"]) == 1
    assert "'xx'" in capsys.readouterr().err
