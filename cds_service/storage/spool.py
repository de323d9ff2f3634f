"""The ledger's spool: append-only files in the instance folder that hold every answered card until the database has it.

Why files: a card answered must be a card recorded, across a database outage of minutes, a `kill -9` of a worker or of
the whole server, and a restart. A line written with one `write()` to an `O_APPEND` file is in the kernel once the
call returns, so it survives the death of the process (not of the machine: nothing is fsynced, the same window as
SQLite's `synchronous=NORMAL`, documented in the README).

Layout: `<instance>/spool/ledger-<pid>-<ns>.jsonl` segments, one line per hook call. A process appends to one segment
of its own and holds an exclusive `flock` on it while it may still write it or is writing its rows to the database.
A segment nobody holds a lock on is an orphan (its process moved on to a new segment, failed to reach the database, or
died: the kernel drops the locks of a killed process), and whoever locks it next replays it. Replay is idempotent
(the database ignores a card uuid it already has), so a segment replayed twice costs time, never a duplicate row.
Lines a replay cannot read or the database refuses go to `dead-letter.jsonl` next to the segments.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

SEGMENT_PREFIX = "ledger-"
SEGMENT_SUFFIX = ".jsonl"
DEAD_LETTER = "dead-letter.jsonl"


class Segment:
    """One spool file, open and locked by this process."""

    def __init__(self, path: Path, fd: int, size: int = 0) -> None:
        self.path = path
        self.fd = fd
        self.size = size

    def lines(self) -> Iterator[bytes]:
        """The segment's complete lines (a line cut short by a crash mid-write is yielded as it is: the reader's
        parser refuses it and dead-letters it)."""
        with open(self.fd, "rb", closefd=False) as stream:
            stream.seek(0)
            for line in stream:
                if line.strip():
                    yield line

    def lost(self) -> bool:
        """The file was deleted under us (instance folder removed): what it held is only in memory now."""
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def discard(self) -> None:
        """Every row of it is in the database: delete it (then unlock, so no one replays a half-deleted file)."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)

    def release(self) -> None:
        """Keep the file for a later replay (by this or any process) and unlock it."""
        os.close(self.fd)


class Spool:
    """The spool folder of one process: its current segment, and the orphans it can lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._current: Segment | None = None
        self._pid = os.getpid()

    # -- the request path -------------------------------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Write one line (ending with a newline) to this process's segment; raises OSError when it cannot (disk
        full, folder read-only or gone), leaving no partial line behind."""
        if self._pid != os.getpid():  # a forked child never writes to its parent's segment
            self._current, self._pid = None, os.getpid()
        segment = self._current
        if segment is None:
            try:
                segment = self._open_segment()
            except FileNotFoundError:  # the folder went between its mkdir and the open (deleted under load): once more
                segment = self._open_segment()
        written = os.write(segment.fd, line)
        if written != len(line):  # a short write (disk full): take it back, so the file holds whole lines only
            os.ftruncate(segment.fd, segment.size)
            raise OSError(f"short write to the spool ({written} of {len(line)} bytes)")
        segment.size += written

    def _open_segment(self) -> Segment:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{SEGMENT_PREFIX}{os.getpid()}-{time.time_ns()}{SEGMENT_SUFFIX}"
        # Created under another name, locked, then renamed into place: no other process can find it unlocked (it
        # would take the new, empty segment for an orphan, replay nothing and delete it).
        hidden = self.folder / f".{name}"
        fd = os.open(hidden, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, self.folder / name)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._current = Segment(self.folder / name, fd)
        return self._current

    # -- the writer -------------------------------------------------------------------------------------------

    @property
    def current_size(self) -> int:
        return self._current.size if self._current is not None and self._pid == os.getpid() else 0

    def rotate(self) -> Segment | None:
        """The current segment, closed for appends (still locked by this process); the next append opens a new one.
        None when nothing was appended since the last rotation."""
        segment = self._current if self._pid == os.getpid() else None
        self._current = None
        return segment

    def orphans(self, *, exclude: Path | None = None) -> Iterator[Segment]:
        """Segments no process holds, each locked for the caller while it is yielded (oldest first). The caller must
        `discard()` or `release()` each."""
        for path in self.segment_paths():
            if path == exclude:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # replayed and deleted by another process meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its process is alive and holds it
                continue
            if os.fstat(fd).st_nlink == 0:  # deleted between listing and locking: already replayed
                os.close(fd)
                continue
            yield Segment(path, fd, os.fstat(fd).st_size)

    def segment_paths(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.folder), key=_age)
        except OSError:  # gone, not a folder, not readable: nothing to replay from it (problem() says why)
            return []
        return [self.folder / name for name in names
                if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)]

    def bytes_on_disk(self) -> int:
        """Bytes in every segment (this process's and the others'): what the database does not have yet, at most."""
        total = 0
        for path in self.segment_paths():
            try:
                total += path.stat().st_size
            except OSError:
                continue
        return total

    def dead_letter(self, line: bytes) -> None:
        """Set aside a line the database refused or that cannot be read, for an operator to look at."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / DEAD_LETTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line if line.endswith(b"\n") else line + b"\n")
        finally:
            os.close(fd)

    def problem(self) -> str | None:
        """Why the spool cannot be written now (None when it can): for /readyz."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"spool folder cannot be created ({exc.strerror})"
        if not os.access(self.folder, os.W_OK | os.X_OK):
            return "spool folder is not writable"
        if self._current is not None and self._pid == os.getpid() and self._current.lost():
            return "spool segment was deleted"
        return None


def _age(name: str) -> tuple[int, str]:
    """Segments sort by the time their process opened them (the name's last number), then by name."""
    stem = name.removeprefix(SEGMENT_PREFIX).removesuffix(SEGMENT_SUFFIX)
    _, _, created = stem.rpartition("-")
    return (int(created) if created.isdigit() else 0, name)
