"""The one exception type for mistakes a user can fix."""


class UserError(ValueError):
    """A problem with the user's input, worded as one line: what is wrong and how to fix it.

    It is a `ValueError`, so a script that catches `ValueError` catches it too.
    The message speaks in terms of the Python API; the CLI prints it as one
    line, exits with status 2, and writes the flag in place of `argument`.

    Args:
        message: what is wrong and how to fix it, e.g.
            `"temperature must be above 0, got -1.0: try 1.0"`.
        argument: the name of the Python argument at fault (`"temperature"`),
            when there is one; the CLI maps it to its flag (`--temperature`).

    Example:

    >>> try:
    ...     raise UserError("temperature must be above 0, got -1.0: try 1.0", argument="temperature")
    ... except ValueError as e:
    ...     e.argument
    'temperature'
    """

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument
