"""User-facing errors: the CLI prints them as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input a user can fix; the message names the file, row or key."""


class DataError(UserError):
    """A dataset problem (missing file, malformed row, unknown category)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """What the CLI turns into one ``error:`` line: zoo's own errors, OS errors on a path the user
    named (an ``--out`` that is a file, a folder that cannot be written, a full disk) and Pillow's
    refusal of a decompression-bomb-sized image. Anything else is a bug and keeps its traceback."""
    from PIL import Image

    return UserError, OSError, Image.DecompressionBombError


def one_line(err: BaseException) -> str:
    """The message of a :func:`user_error_types` error on one line, naming the path when it has one.

    An error re-raised from a DataLoader worker carries the worker's traceback in its message;
    only its last line (the original message) is kept.
    """
    if isinstance(err, OSError) and not isinstance(err, UserError) and err.filename is not None:
        target = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else str(err.filename)
        return f"{target}: {(err.strerror or type(err).__name__).lower()}"
    text = str(err).strip() or type(err).__name__
    if "\nOriginal Traceback" in text:  # torch.utils.data's re-raise: "...\n<module>.<Type>: message"
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
