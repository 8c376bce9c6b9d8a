"""Offline tools of tasc-vllm. TASC-ft, the vocabulary enrichment and fine-tuning tool
(``python -m tools.enrich``), will live here; it is not written yet."""
