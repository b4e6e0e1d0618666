"""What the commands print: standard output that may go away (`| head`), and how a failed write is named."""

import os
import sys


def writing(filename: str | None) -> str:
    return f" writing {filename}" if filename else ""


class OutputMayGoAway:
    """`sys.stdout` for a command that must finish whoever reads it (`train | head -2`): once the reader went away,
    what is written goes to /dev/null instead of raising `BrokenPipeError`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            stop_writing_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            stop_writing_stdout()  # what is still buffered is written to /dev/null at the next flush
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def stop_writing_stdout() -> None:
    """The reader of stdout went away (`| head`): send what is left to /dev/null, so that exiting flushes quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
