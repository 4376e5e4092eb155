"""The project's link-token secret in .campaign-secret: made once, atomically, never empty.

The secret is the HMAC key behind every unsubscribe and view token, so it must
never be empty (anyone could then compute every token) and must not change
(links already mailed would stop working). The file is written whole under a
temporary name, synced, and then hard-linked to its final name: `link` fails
when the name exists, so of two processes making it at once the first wins and
the second reads the winner's secret. A reader therefore never sees a half-written
file; one that is empty or short anyway (a crash of an older version, an edit by
hand) is an error, never a key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigError

SECRET_FILE = ".campaign-secret"
MIN_LENGTH = 32          # token_urlsafe(32) gives 43 characters
HOW_TO_SET = ("set CAMPAIGN_TOKEN_SECRET in the environment (e.g. to the output of "
              "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
              "or make the project folder writable so .campaign-secret can be made")
MISSING = f"no secret for the links' tokens (.campaign-secret cannot be made); {HOW_TO_SET}"


def project_secret(root: Path) -> str:
    """The secret kept in ROOT/.campaign-secret, made now if there is none.

    Returns "" when there is none and it cannot be made (a read-only folder):
    whatever needs a token then stops with MISSING's message.
    """
    path = root / SECRET_FILE
    existing = _read(path)
    if existing is not None:
        return existing
    if not _make(path):
        return ""
    made = _read(path)  # ours, or the one another process linked first
    if made is None:
        raise ConfigError(f"{path}: was made but is gone; {HOW_TO_SET}")
    return made


def _read(path: Path) -> str | None:
    """The secret in `path`, None when the file does not exist; an error when it is unusable."""
    try:
        secret = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error}); fix it, or delete it so a new secret "
                          f"is made, or {HOW_TO_SET}") from None
    if len(secret) < MIN_LENGTH:
        raise ConfigError(f"{path}: holds {len(secret)} characters, not a usable secret (at least "
                          f"{MIN_LENGTH}); delete it so a new one is made (links in mail already sent "
                          "with it will stop working), or set CAMPAIGN_TOKEN_SECRET")
    return secret


def _make(path: Path) -> bool:
    """Link a new, synced secret file into place. True once the file exists (made here or by
    another process), False when the folder cannot be written."""
    temporary = path.with_name(f"{SECRET_FILE}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return True  # another process linked its secret first: everyone uses that one
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temporary, path)
        _sync_folder(path.parent)
        return True
    except OSError as error:
        raise ConfigError(f"{path}: cannot be written ({error}); {HOW_TO_SET}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
