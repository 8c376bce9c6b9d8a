"""Evaluation: the embedded models, the task data, the offline engine runner, the oracle
drafter and the demo. A vLLM worker serving TASC-spec never imports this package."""
