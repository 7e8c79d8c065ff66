"""Incremental indexing: count first, read only what changed, write in batches.

A run walks the project (stat only), compares each file with the stored
state and plans: files whose mtime and size match are unchanged and not
opened; the others are read and hashed, and one whose hash matches is only
"touched" (its new mtime stored, nothing re-parsed); the rest are parsed and
their rows replaced; files gone from the tree lose their rows.  The plan's
size is reported before any file is read, then progress after each batch.

Reading and parsing run in a worker thread one batch at a time, and each
batch is written in one transaction, so cancelling a run (its cancel scope)
stops the work at the next batch and leaves an index that is consistent file
by file: the next run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from .extract import build_file_index
from .languages.detect import detect_language
from .languages.python_ast import package_prefix
from .model import FileIndex, FileState
from .store import IndexStore
from .walk import Skipped, WalkEntry, WalkLimits, read_text, walk

__all__ = ("IndexReport", "index_project", "Progress", "BATCH_FILES")

BATCH_FILES = 64
#: ``(done, total, message)``, awaited after the plan and after each batch
Progress = Callable[[int, int, str], Awaitable[None]]


@dataclass(slots=True)
class IndexReport:
    project: str
    planned: int = 0
    indexed: int = 0
    touched: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # language -> why it is text-only
    seconds: float = 0.0
    complete: bool = False
    #: paths whose rows changed (re-parsed or removed), and whether the set of files did
    changed: list[str] = field(default_factory=list)
    files_added_or_removed: bool = False


@dataclass(slots=True)
class _Batch:
    files: list[FileIndex] = field(default_factory=list)
    touched: list[FileState] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _read_batch(root: Path, entries: list[WalkEntry], known: dict[str, FileState],
                max_bytes: int, prefix: str = "") -> _Batch:
    batch = _Batch()
    for entry in entries:
        text, data, reason = read_text(root, entry.path, max_bytes)
        if text is None:
            batch.skipped.append(Skipped(entry.path, reason))
            continue
        digest = hashlib.sha256(data).hexdigest()
        state = FileState(entry.path, entry.mtime_ns, len(data), digest)
        old = known.get(entry.path)
        if old is not None and old.sha256 == digest:
            batch.touched.append(state)
            continue
        language = detect_language(entry.path, text[:200].split("\n", 1)[0])
        batch.files.append(build_file_index(state, language, text, data, prefix=prefix))
    return batch


async def index_project(name: str, root: Path, store: IndexStore, *,
                        limits: WalkLimits | None = None, progress: Progress | None = None,
                        batch_files: int = BATCH_FILES) -> IndexReport:
    """Bring the index of ``root`` (project ``name``) up to date; see the module doc."""
    started = time.perf_counter()
    limits = limits or WalkLimits()
    report = IndexReport(name)
    walked = await anyio.to_thread.run_sync(walk, root, limits)
    prefix = package_prefix(root)
    report.skipped.extend(walked.skipped)
    known = await store.file_states(name)
    present = {entry.path for entry in walked.files}
    gone = sorted(path for path in known if path not in present)
    todo = [entry for entry in walked.files
            if (old := known.get(entry.path)) is None
            or (old.mtime_ns, old.size) != (entry.mtime_ns, entry.size)]
    report.planned = len(todo)
    report.unchanged = len(walked.files) - len(todo)
    if progress is not None:
        await progress(0, len(todo), f"indexing {len(todo)} files of {name} "
                                     f"({report.unchanged} unchanged, {len(gone)} removed)")
    if gone:
        await store.write(name, [], gone, [])
        report.deleted = len(gone)
        report.changed.extend(gone)
        report.files_added_or_removed = True
    done = 0
    for start in range(0, len(todo), batch_files):
        part = todo[start:start + batch_files]
        batch = await anyio.to_thread.run_sync(_read_batch, root, part, known,
                                               limits.max_file_bytes, prefix)
        replaced = [f.state.path for f in batch.files if f.state.path in known]
        dropped = [s.path for s in batch.skipped if s.path in known]
        await store.write(name, batch.files, replaced + dropped, batch.touched)
        report.indexed += len(batch.files)
        report.changed.extend(f.state.path for f in batch.files)
        report.changed.extend(dropped)
        if len(replaced) < len(batch.files) or dropped:
            report.files_added_or_removed = True
        report.touched += len(batch.touched)
        report.skipped.extend(batch.skipped)
        for file in batch.files:
            if file.note and file.language not in report.notes and "grammar" in file.note:
                report.notes[file.language] = file.note
        done += len(part)
        if progress is not None:
            await progress(done, len(todo), f"indexed {done} of {len(todo)} files")
    report.complete = True
    report.seconds = time.perf_counter() - started
    return report
