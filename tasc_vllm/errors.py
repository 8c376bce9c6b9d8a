"""The one exception type every user-facing failure of tasc-vllm raises."""


class TascError(Exception):
    """A problem with the user's input or environment, with a message that names it."""
