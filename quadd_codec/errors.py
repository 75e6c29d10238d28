"""Typed errors: one class for every way a `.qdd` file or a codec call can be wrong.

Everything raised for a bad *file* derives from `QddFormatError`, so callers that only
care whether the file is usable catch one class; the CLI maps any `QddError` to exit 1.
"""

from __future__ import annotations


class QddError(Exception):
    """Base class of every error quadd_codec raises on purpose."""


class QddFormatError(QddError):
    """The bytes are not a valid `.qdd` file."""


class QddSignatureError(QddFormatError):
    """The first 8 bytes are not the `.qdd` signature (not a .qdd, or text-mode damage)."""


class QddVersionError(QddFormatError):
    """The file's major version is not one this reader implements."""


class QddFeatureError(QddFormatError):
    """The file sets a required-feature flag this reader does not implement."""


class QddTruncatedError(QddFormatError):
    """The file is shorter than its own structure says it must be."""


class QddChecksumError(QddFormatError):
    """A CRC32C does not match: the header or a section is damaged."""


class QddHeaderError(QddFormatError):
    """The header is not valid msgpack, or violates the header schema."""


class QddLayoutError(QddFormatError):
    """Sections overlap, leave holes, run out of range, or disagree with the header."""


class QddValueError(QddError, ValueError):
    """Arguments given to the writer or codec are invalid (not a file problem)."""


class QddChangedError(QddFormatError):
    """The file changed on disk while a reader was using it (size, inode or mtime)."""
