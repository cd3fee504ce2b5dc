"""WAV files as Asterisk's ``format_wav`` plays them: 8 kHz, 16-bit, mono, linear PCM.

:func:`check_wav` is for admins replacing prompts with recordings (on disk or uploaded on the
screen): it reads the RIFF chunks itself so that every refusal says what is wrong and what to do.
:func:`write_wav` writes the plain 44-byte-header form that ``make sounds`` commits.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import wave
from pathlib import Path
from typing import BinaryIO

RATE = 8000
SAMPLE_WIDTH = 2  # bytes
CHANNELS = 1
_PCM = 1
_EXTENSIBLE = 0xFFFE
_PCM_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
WANTED = "8 kHz, 16-bit, mono PCM WAV"


def check_wav(path: Path | str) -> str | None:
    """None when ``path`` is a WAV that Asterisk plays as a prompt, else what is wrong with it."""
    path = Path(path)
    if path.suffix != ".wav":
        return f"{path.name}: the name must end in .wav (lower case), and it must be a {WANTED}"
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            error = _check(f, size)
    except OSError as exc:
        return f"{path.name}: cannot read ({exc.strerror or exc})"
    return None if error is None else f"{path.name}: {error}"


def check_wav_bytes(data: bytes) -> str | None:
    """As :func:`check_wav`, for an upload held in memory."""
    return _check(io.BytesIO(data), len(data))


def _check(f: BinaryIO, size: int) -> str | None:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return f"not a WAV file (RIFF/WAVE header missing); save it as a {WANTED}"
    fmt: bytes | None = None
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = f.read(min(chunk_size, 64))
            if len(fmt) < 16:
                return "the fmt chunk is cut short"
            if error := _check_fmt(fmt):
                return error
        elif chunk_id == b"data":
            if fmt is None:
                return "the data chunk comes before the fmt chunk"
            if chunk_size == 0:
                return "no audio in the data chunk"
            if body + chunk_size > size:
                return "the data chunk is cut short (file truncated?)"
            if chunk_size % SAMPLE_WIDTH:
                return "the data chunk holds a broken sample"
            return None
        pos = body + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return "no data chunk" if fmt is not None else "no fmt chunk"


def _check_fmt(fmt: bytes) -> str | None:
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or fmt[24:26] != b"\x01\x00" or fmt[26:40] != _PCM_GUID_TAIL:
            return f"encoded audio (extensible, not PCM); save it as a {WANTED}"
    elif tag != _PCM:
        return f"encoded audio (format {tag:#06x}, not PCM); save it as a {WANTED}"
    problems = []
    if rate != RATE:
        problems.append(f"{rate} Hz, not {RATE} Hz")
    if bits != SAMPLE_WIDTH * 8:
        problems.append(f"{bits}-bit, not 16-bit")
    if channels != CHANNELS:
        problems.append(f"{channels} channels, not mono")
    if problems:
        return f"{', '.join(problems)}; save it as a {WANTED}"
    if block_align != SAMPLE_WIDTH or byte_rate != RATE * SAMPLE_WIDTH:
        return "inconsistent fmt chunk (byte rate or block align)"
    return None


def write_wav(path: Path | str, pcm: bytes, rate: int = RATE) -> None:
    """Write 16-bit mono little-endian ``pcm`` atomically (a reader never sees half a file)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    write_atomically(path, out.getvalue())


def write_atomically(path: Path | str, data: bytes) -> None:
    """Put ``data`` at ``path`` through a temporary file and a rename: Asterisk playing the
    prompt meanwhile reads the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            raw.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_wav(path: Path | str) -> tuple[bytes, int]:
    """16-bit mono PCM samples and their rate (for the speech tools' output)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != SAMPLE_WIDTH or w.getnchannels() != CHANNELS:
            raise ValueError(f"{path}: expected 16-bit mono")
        return w.readframes(w.getnframes()), w.getframerate()
