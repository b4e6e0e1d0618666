"""Write files so that a crash never leaves a half-written artifact behind.

Every artifact is written to a temporary file in the same directory and then
renamed over the destination with `os.replace`, which is atomic on POSIX and
Windows file systems.
"""

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

# A full disk, a full quota, a read-only disk: the user can fix them, so they get one line, not a traceback.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` if the block succeeds.

    The temporary name keeps the destination's suffix, so writers that check
    extensions (`model.save` wants `.keras`) accept it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    os.unlink(tmp)  # writers such as model.save refuse to overwrite silently
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: str | os.PathLike, columns: list[str], rows: Iterable[dict]) -> None:
    """A CSV file of `rows` (dicts keyed by `columns`), with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def disk_error(error: BaseException | None) -> tuple[int, str | None] | None:
    """`(errno, file name)` of the full- or read-only-disk error behind `error`, or None.

    The cause chain is searched; TensorFlow's own file errors carry no errno,
    only the system's words for it.
    """
    while error is not None:
        if isinstance(error, OSError):
            if error.errno in DISK_ERRORS:
                return error.errno, error.filename
        else:
            code = next((code for code in DISK_ERRORS if os.strerror(code) in str(error)), None)
            if code is not None:
                return code, None
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory path beside `path`; swap it in for `path` if the block succeeds.

    The path is not created: writers such as `tf.saved_model.save` create it.
    An existing `path` is moved aside and deleted only once the new one is in
    place, so `path` never holds a half-written directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.rmdir()
    old = tmp.with_name(tmp.name + ".old")
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def write_bytes_durably(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file, `fsync` it, rename it onto `path` and `fsync` the directory.

    Once it returns, the file survives a power cut; if it raises (a full
    disk), `path` and everything else in its directory are as they were.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:  # os.write names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from None
        finally:
            os.close(fd)
    if os.name != "posix":
        return  # only POSIX syncs a directory's entries
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
