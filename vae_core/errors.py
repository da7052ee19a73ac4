"""One error type for every mistake a user can make, with a message meant for them."""


class FrameStreamError(ValueError):
    """Bad input: says what was wrong and what is expected. Nothing has been written."""
