"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class VbenchError(Exception):
    """Bad input the user can fix; the message says what was wrong and what to do."""


class UnknownNameError(VbenchError):
    """A name (backbone, suite, ...) that is not registered."""
