"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with the user's input, worded as one line: what is wrong and how to fix it.

    The CLI prints it without a traceback and exits with status 2; the Python
    API lets it propagate like any exception.
    """
