"""The one exception type every user-facing failure of tasc-vllm raises."""


class TascError(Exception):
    """A problem with the user's input or environment, with a message that names it."""


def exit_code(prog: str, action, *args) -> int:
    """Run a command's ``action(*args)`` and return its exit status: 0; 2 with the message of a
    :class:`TascError` on stderr; 130 when interrupted."""
    import sys

    try:
        action(*args)
    except TascError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
