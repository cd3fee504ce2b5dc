"""``ivrpay sounds install DIR``: the shipped prompts into an Asterisk sounds directory.

Each language's files go to ``DIR/<lang>/ivrpay/<id>.wav`` (Asterisk's language layout) and the
catalogue to ``DIR/prompts.csv``, so ``DIR`` can also be ``IVRPAY_SOUNDS_DIR``. A manifest,
``DIR/.ivrpay-sounds`` (``sha256sum`` format), records what was installed: a file that no longer
matches it, or was there before without being ours, was replaced by an admin and is kept, unless
``force``; then the admin's file is first saved as ``DIR/<lang>/ivrpay-backup/<id>.wav``, where the
admin screen's "restore" finds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ivrpay.sounds.catalogue import BACKUP_DIR, CSV_NAME, SUBDIR, load_prompts
from ivrpay.sounds.wav import write_atomically

MANIFEST = ".ivrpay-sounds"


class InstallError(Exception):
    """Nothing can be installed (a language not shipped, a folder not writable); one line."""


@dataclass
class InstallReport:
    """Paths relative to the target directory, by what happened to each."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # an older shipped file, untouched
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # replaced there: left as it is
    overwritten: list[str] = field(default_factory=list)  # replaced there, but --force
    backups: list[str] = field(default_factory=list)  # where the overwritten ones were saved


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(target: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of what an earlier install put there (empty when none)."""
    try:
        text = (target / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    recorded = {}
    for line in text.splitlines():
        digest, sep, rel = line.partition("  ")
        if sep and len(digest) == 64:
            recorded[rel] = digest
    return recorded


def shipped_files(source: Path, languages: Iterable[str]) -> list[str]:
    """The catalogue and every prompt of ``languages``, relative to ``source``, in order."""
    prompts = load_prompts(source)
    files = [CSV_NAME]
    for lang in languages:
        if not (source / lang / SUBDIR).is_dir():
            raise InstallError(f"no prompts are shipped for language {lang!r}")
        files += [f"{lang}/{SUBDIR}/{pid}.wav" for pid in prompts]
    return files


def install_prompts(
    source: Path, target: Path, languages: Iterable[str], *, force: bool = False
) -> InstallReport:
    """Copy the shipped prompts of ``languages`` from ``source`` into ``target``."""
    report = InstallReport()
    files = shipped_files(source, languages)
    recorded = read_manifest(target)
    try:
        for rel in files:
            data = (source / rel).read_bytes()
            digest = _digest(data)
            dest = target / rel
            if not dest.is_file():
                write_atomically(dest, data)
                report.new.append(rel)
            else:
                there = dest.read_bytes()
                if there == data:
                    report.unchanged.append(rel)
                elif recorded.get(rel) == _digest(there):
                    write_atomically(dest, data)
                    report.updated.append(rel)
                elif not force:
                    report.kept.append(rel)
                    continue  # the manifest keeps what it had for this file
                else:
                    lang, _, name = rel.partition(f"/{SUBDIR}/")
                    if name:
                        backup = f"{lang}/{BACKUP_DIR}/{name}"
                        write_atomically(target / backup, there)
                        report.backups.append(backup)
                    write_atomically(dest, data)
                    report.overwritten.append(rel)
            recorded[rel] = digest
        lines = "".join(f"{d}  {rel}\n" for rel, d in sorted(recorded.items()))
        write_atomically(target / MANIFEST, lines.encode("utf-8"))
    except OSError as exc:
        raise InstallError(f"cannot install into {target}: {exc.strerror or exc}") from None
    return report
