"""vLLM general-plugin entry point. vLLM calls ``register`` in every engine and worker
process, for every user, so it imports nothing heavy and never raises."""

from __future__ import annotations

import logging


def register() -> None:
    try:
        logging.getLogger("tasc_vllm").setLevel(logging.INFO)
        if not logging.getLogger("tasc_vllm").handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s [tasc_vllm] %(message)s"))
            logging.getLogger("tasc_vllm").addHandler(handler)
    except Exception:  # a logging problem must not stop an engine
        pass
