"""Writing files so that nobody ever sees half of one, into folders whose failure is one line."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError


def make_folder(path: Path, *, setting: str = "build_dir") -> Path:
    """Create `path` and its parents; a folder that cannot be made is one OutputError naming the setting."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path}: cannot create this folder ({error.strerror or error}); "
                          f"check {setting} in campaign.toml") from None
    return path


@contextmanager
def atomic_writer(path: Path, *, newline: str | None = None, public: bool = False) -> Iterator[IO[str]]:
    """Write to a temporary file beside `path`, then rename it over `path` in one step.

    The file is private (0600) unless `public`: then 0644, for what a web server serves.
    """
    make_folder(path.parent)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        if public:
            os.fchmod(descriptor, 0o644)
    except OSError as error:
        raise OutputError(f"{path}: cannot write it ({error.strerror or error}); check build_dir in campaign.toml") \
            from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, public: bool = False) -> None:
    with atomic_writer(path, public=public) as handle:
        handle.write(text)
