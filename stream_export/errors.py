"""The exception family, each member carrying the CLI exit code it maps to."""


class ExportError(Exception):
    """Base of every error stream_export raises on purpose; the message says what and how to fix it."""

    exit_code = 1


class ConfigError(ExportError, ValueError):
    """Options that contradict each other or the model (exit code 2)."""

    exit_code = 2


class InputError(ExportError, ValueError):
    """A Parquet shard, column or document that cannot be exported (exit code 3)."""

    exit_code = 3


class VocabError(InputError):
    """A vocabulary or label-name file that cannot give every id a word (exit code 3)."""


class ModelError(ExportError, ValueError):
    """A model file that cannot be loaded or has nothing to export (exit code 4)."""

    exit_code = 4


class OutputError(ExportError, OSError):
    """The output folder cannot be written, or holds something in the way (exit code 5)."""

    exit_code = 5


class ResumeError(ExportError):
    """An export that cannot be resumed as asked (exit code 6)."""

    exit_code = 6


class Interrupted(ExportError):
    """SIGINT/SIGTERM arrived; the work done so far is committed (exit code 75, EX_TEMPFAIL)."""

    exit_code = 75


class MergeError(ExportError):
    """The parts of a sharded export cannot be merged: one is missing, incomplete or different (exit code 8)."""

    exit_code = 8
