"""The one exception invgan raises for a caller's mistake."""


class InvganError(ValueError):
    """Bad input or settings: the message names the argument and says what to do.

    A ``ValueError``, so code that catches ``ValueError`` catches it; the CLI prints its message
    on one line and exits with code 2.
    """
