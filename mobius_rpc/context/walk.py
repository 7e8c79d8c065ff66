"""The walk over a project: which files the index reads, and why it skips the others.

Rules, in order, each skip carrying a reason a user can act on:

* ``.git`` and the usual build/vendor directories are never entered;
* ``.gitignore`` files (at the root and in every directory below it, with
  git's own pattern rules via ``pathspec``) exclude what they match;
* a symlink is followed only if it resolves inside the root; one that leaves
  the root, dangles, or closes a loop (a directory seen before, by device and
  inode) is skipped;
* files above ``max_file_bytes`` are skipped as oversized; files whose first
  bytes hold a NUL, or that are not UTF-8, are skipped as binary/undecodable
  (decided when read, see :func:`read_text`).

The walk never reads outside the root, and never reads a file's contents:
it only stats, so counting what an index will do is cheap.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

__all__ = ("WalkLimits", "WalkEntry", "Skipped", "WalkResult", "walk", "read_text",
           "SKIPPED_DIRS", "resolve_inside")

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv",
                          "venv", ".tox", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                          "dist", "build", "target", ".eggs", ".idea", ".vscode"})


@dataclass(frozen=True, slots=True)
class WalkLimits:
    max_file_bytes: int = 1_000_000
    max_files: int = 200_000
    max_depth: int = 64


@dataclass(frozen=True, slots=True)
class WalkEntry:
    path: str  # relative to the root, with "/" separators
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(slots=True)
class WalkResult:
    files: list[WalkEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    truncated: bool = False


def resolve_inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` with every symlink resolved, or None if that leaves ``root``.

    Absolute paths, ``..`` that climbs out, and links pointing elsewhere all
    give None: the one check every read of a project file goes through.
    """
    if not relative or "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    if os.path.isabs(relative) or (len(relative) > 1 and relative[1] == ":"):
        return None
    real_root = root.resolve()
    try:
        target = (real_root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if target != real_root and real_root not in target.parents:
        return None
    return target


def _ignore_spec(directory: Path) -> pathspec.PathSpec[Any] | None:
    try:
        text = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(specs: list[tuple[str, pathspec.PathSpec[Any]]], rel: str, is_dir: bool) -> bool:
    ignored = False
    for base, spec in specs:
        sub = rel[len(base) + 1:] if base else rel
        candidate = sub + "/" if is_dir else sub
        # later (deeper) files override earlier ones, as in git
        result = spec.check_file(candidate)
        if result.include is not None:
            ignored = bool(result.include)
    return ignored


def walk(root: Path, limits: WalkLimits | None = None) -> WalkResult:
    """Every indexable file under ``root`` and every skip with its reason (sorted)."""
    limits = limits or WalkLimits()
    result = WalkResult()
    real_root = root.resolve()
    seen_dirs: set[tuple[int, int]] = set()
    root_stat = real_root.stat()
    seen_dirs.add((root_stat.st_dev, root_stat.st_ino))
    for entry in _walk_dir(real_root, real_root, "", [], seen_dirs, limits, result, 0):
        if len(result.files) >= limits.max_files:
            result.truncated = True
            result.skipped.append(Skipped(entry.path, f"over the limit of {limits.max_files} "
                                                      "files: the rest is not indexed"))
            break
        result.files.append(entry)
    result.files.sort(key=lambda e: e.path)
    return result


def _walk_dir(real_root: Path, directory: Path, rel: str,
              specs: list[tuple[str, pathspec.PathSpec[Any]]], seen: set[tuple[int, int]],
              limits: WalkLimits, result: WalkResult, depth: int) -> Iterator[WalkEntry]:
    own = _ignore_spec(directory)
    specs = [*specs, (rel, own)] if own is not None else specs
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        result.skipped.append(Skipped(rel or ".", f"unreadable directory: {exc.strerror}"))
        return
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        child = directory / name
        try:
            lst = child.lstat()
        except OSError as exc:
            result.skipped.append(Skipped(child_rel, f"cannot stat: {exc.strerror}"))
            continue
        info = lst
        if stat.S_ISLNK(lst.st_mode):
            try:
                target = child.resolve(strict=True)
                info = target.stat()
            except (OSError, RuntimeError):
                result.skipped.append(Skipped(child_rel, "symlink that dangles or loops"))
                continue
            if target != real_root and real_root not in target.parents:
                result.skipped.append(Skipped(child_rel, "symlink that leaves the project root"))
                continue
        is_dir = stat.S_ISDIR(info.st_mode)
        if is_dir and name in SKIPPED_DIRS:
            continue
        if name == ".git":
            continue
        if _ignored(specs, child_rel, is_dir):
            continue
        if is_dir:
            key = (info.st_dev, info.st_ino)
            if key in seen:
                result.skipped.append(Skipped(child_rel, "directory already visited "
                                                         "(a symlink loop or a second link)"))
                continue
            if depth + 1 > limits.max_depth:
                result.skipped.append(Skipped(child_rel, f"deeper than {limits.max_depth} "
                                                         "directories"))
                continue
            seen.add(key)
            yield from _walk_dir(real_root, child, child_rel, specs, seen, limits, result,
                                 depth + 1)
        elif stat.S_ISREG(info.st_mode):
            if info.st_size > limits.max_file_bytes:
                result.skipped.append(Skipped(child_rel, f"oversized: {info.st_size} bytes "
                                                         f"> {limits.max_file_bytes}"))
                continue
            yield WalkEntry(child_rel, info.st_mtime_ns, info.st_size)
        else:
            result.skipped.append(Skipped(child_rel, "not a regular file"))


def read_text(root: Path, relative: str, max_bytes: int) -> tuple[str | None, bytes, str]:
    """The text of a project file, its bytes, and a reason when there is no text.

    Re-checks that the path stays inside the root at read time (the tree may
    have changed since the walk) and refuses binary and undecodable content.
    """
    target = resolve_inside(root, relative)
    if target is None:
        return None, b"", "outside the project root (or missing)"
    try:
        with open(target, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return None, b"", f"unreadable: {exc.strerror}"
    if len(data) > max_bytes:
        return None, b"", f"oversized: more than {max_bytes} bytes"
    if b"\x00" in data[:8192]:
        return None, data, "binary (NUL bytes)"
    try:
        return data.decode("utf-8"), data, ""
    except UnicodeDecodeError:
        return None, data, "undecodable: not UTF-8"
