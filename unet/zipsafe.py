"""Unpacking a user's zip without trusting it: `zipfile` itself protects against none of this.

Every member's resolved path is checked with `os.path.commonpath` (so `../../x.png` and absolute paths are
skipped), symlinks are refused, the member count and total size are capped before anything is written (so a
zip bomb is an error, not a full disk), and members are streamed to disk in chunks.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from unet.dataset_check import Problem
from unet.errors import UserError
from unet.images import MAX_FILE_BYTES

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 2 * 1024**3  # uncompressed, the whole zip
JUNK_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}
JUNK_FOLDERS = {"__macosx"}
_CHUNK = 1 << 20


def is_junk(parts: tuple[str, ...]) -> bool:
    """Files that operating systems add (`__MACOSX/`, `.DS_Store`, `Thumbs.db`) and hidden files: ignored quietly."""
    return any(p.lower() in JUNK_FOLDERS or p.startswith(".") for p in parts) or (
        bool(parts) and parts[-1].lower() in JUNK_NAMES
    )


def _gigabytes(size: int) -> str:
    return f"{size / 1024**3:.1f} GB"


def extract_zip(
    archive: Path,
    dest: Path,
    max_members: int | None = None,
    max_total_bytes: int | None = None,
    max_member_bytes: int | None = None,
    label: str | None = None,
) -> list[Problem]:
    """Unpack `archive` into `dest`; members that are unsafe or broken are skipped and returned as problems.

    Raises UserError (before writing anything) when the file is not a zip, or holds too many members or too many
    bytes once unpacked. The limits default to the module constants, read at call time. `label` is the name the
    user knows the zip by (an upload's own name), used in messages instead of the file's name on disk.
    """
    max_members = MAX_MEMBERS if max_members is None else max_members
    max_total_bytes = MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
    max_member_bytes = MAX_FILE_BYTES if max_member_bytes is None else max_member_bytes
    archive, dest = Path(archive), Path(dest).resolve()
    shown = Path(label).name if label else archive.name
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UserError(f"'{shown}' is not a zip file, or it is damaged") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_members:
            raise UserError(f"'{shown}' holds {len(members)} files; at most {max_members} are accepted")
        total = sum(m.file_size for m in members)
        if total > max_total_bytes:
            raise UserError(
                f"'{shown}' would unpack to {_gigabytes(total)}; at most {_gigabytes(max_total_bytes)} "
                "are accepted (is it a zip bomb?)"
            )
        problems: list[Problem] = []
        written = 0
        for member in members:
            problem = _check_member(member, dest, max_member_bytes)
            if problem is None:
                continue
            if problem:
                problems.append(Problem(member.filename, problem))
                continue
            target = _target(member, dest)
            try:
                written += _stream(zf, member, target, max_total_bytes - written)
            except _TooBig:
                _remove(target)
                raise UserError(
                    f"'{shown}' unpacks to more than {_gigabytes(max_total_bytes)} (its sizes lie)"
                ) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
                _remove(target)  # a name too long for the disk cannot even be removed: that must not crash
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).replace(str(dest), "")
                problems.append(Problem(member.filename, f"damaged inside the zip and cannot be unpacked ({reason})"))
    return problems


def _target(member: zipfile.ZipInfo, dest: Path) -> Path:
    return dest.joinpath(*PurePosixPath(member.filename.replace("\\", "/")).parts)


def _check_member(member: zipfile.ZipInfo, dest: Path, max_member_bytes: int) -> str | None:
    """'' when the member may be unpacked, a reason when it must be reported, None to skip it quietly."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if member.is_dir() or not parts:
        return None
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path and was skipped (nothing is written outside the dataset)"
    resolved = os.path.realpath(dest.joinpath(*parts))
    if os.path.commonpath([resolved, str(dest)]) != str(dest):
        return "points outside the zip's folder and was skipped (nothing is written outside the dataset)"
    if is_junk(parts):
        return None
    if stat.S_ISLNK(member.external_attr >> 16):
        return "is a symbolic link and was skipped"
    if member.flag_bits & 0x1:
        return "is password-protected and cannot be unpacked"
    if member.file_size > max_member_bytes:
        return f"is {member.file_size / 1024**2:.0f} MB; files over {max_member_bytes // 1024**2} MB are refused"
    return ""


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class _TooBig(Exception):
    pass


def _stream(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member in chunks, stopping if it unpacks to more than its header or the budget allows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    limit = min(member.file_size, budget)
    copied = 0
    with zf.open(member) as src, target.open("wb") as out:
        while chunk := src.read(_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise _TooBig
            out.write(chunk)
    return copied
