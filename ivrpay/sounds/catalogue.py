"""The prompt catalogue: ``sounds/prompts.csv`` and the layout of the audio files.

``prompts.csv`` has a header ``id,<lang>,<lang>…`` (today ``id,ja,en``) and one row per prompt with
its wording in each language; an empty wording means "nothing to say" (the file is a short
silence). The audio of a prompt is ``<sounds_dir>/<lang>/ivrpay/<id>.wav``, Asterisk's language
layout, played as ``ivrpay/<id>`` once the channel's language is set.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CSV_NAME = "prompts.csv"
SUBDIR = "ivrpay"  # Asterisk plays sounds/<lang>/ivrpay/<id>.wav as "ivrpay/<id>"
BACKUP_DIR = "ivrpay-backup"  # beside <lang>/ivrpay/: the admin's previous file of each prompt
_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_LANG = re.compile(r"[a-z]{2}(_[A-Z]{2})?")


class CatalogueError(ValueError):
    """``prompts.csv`` is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Prompt:
    id: str
    texts: Mapping[str, str]

    def text(self, lang: str) -> str:
        """The wording in ``lang``; empty when the prompt has nothing to say in it."""
        return self.texts[lang]


def load_prompts(sounds_dir: Path | str) -> dict[str, Prompt]:
    """Read ``<sounds_dir>/prompts.csv`` into ``{id: Prompt}``, in file order."""
    path = Path(sounds_dir) / CSV_NAME
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogueError(f"{path}: cannot read ({exc})") from None
    if not rows or rows[0][:1] != ["id"] or len(rows[0]) < 2:
        raise CatalogueError(f"{path}: the first line must be the header id,ja,en")
    langs = [c.strip() for c in rows[0][1:]]
    bad = [lang for lang in langs if not _LANG.fullmatch(lang)]
    if bad or len(set(langs)) != len(langs):
        raise CatalogueError(f"{path}: bad language columns {', '.join(langs)}")
    prompts: dict[str, Prompt] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(langs) + 1:
            raise CatalogueError(f"{path}:{line}: expected {len(langs) + 1} columns")
        pid = row[0].strip()
        if not _ID.fullmatch(pid):
            raise CatalogueError(f"{path}:{line}: bad prompt id {pid!r} (a-z, 0-9, _)")
        if pid in prompts:
            raise CatalogueError(f"{path}:{line}: prompt id {pid!r} listed twice")
        prompts[pid] = Prompt(
            pid, {lang: t.strip() for lang, t in zip(langs, row[1:], strict=True)}
        )
    return prompts


def prompt_file(sounds_dir: Path | str, lang: str, prompt_id: str) -> Path:
    return Path(sounds_dir) / lang / SUBDIR / f"{prompt_id}.wav"


def playback_name(prompt_id: str) -> str:
    """The name Asterisk plays (STREAM FILE, GET DATA): no extension, the language is its choice."""
    return f"{SUBDIR}/{prompt_id}"


def missing_files(
    sounds_dir: Path | str, languages: Iterable[str], ids: Iterable[str]
) -> list[Path]:
    """The audio files of ``ids`` that do not exist, per language, in a stable order."""
    ids = list(ids)
    return [
        path
        for lang in languages
        for pid in ids
        if not (path := prompt_file(sounds_dir, lang, pid)).is_file()
    ]
