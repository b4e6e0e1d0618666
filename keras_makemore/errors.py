"""The one exception type for mistakes a user can fix."""


class UserError(ValueError):
    """A problem with the user's input, worded as one line: what is wrong and how to fix it.

    It is a `ValueError`, so a script that catches `ValueError` catches it too.
    The CLI prints it without a traceback and exits with status 2.
    """
