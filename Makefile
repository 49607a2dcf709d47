# Quick start: `make demo` and `make test`. Both create .venv if missing and install
# the package (compiling the C++ range coder) first.
#
# These machines: torch 2.14.1 + torchvision 0.29.1 are the builds that lie on disk and
# import together (compressai and lpips need torchvision); pyproject keeps open ranges.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
SOURCES := pyproject.toml CMakeLists.txt $(wildcard csrc/*.h csrc/*.cc)

.PHONY: demo test bench lint fuzz clean gpu-data train-gpu

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(SOURCES) | $(PY)
	$(PIP) $(TORCH_PIN)
	$(PIP) -e '.[test]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PIP) -e '.[test,bench]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/codec demo

test: $(STAMP)
	$(PY) -m pytest
	$(PY) -m ruff check .

bench: $(BENCH_STAMP)
	$(PY) bench/coder.py

# Training photos for the GPU machine (only the checkout travels; 64 MiB at most): BSDS500
# train+val, Sun-Hays80 and Urban100 (shrunk to 512 px) for training, 24 BSDS500 test photos
# held out for the evaluations during training (Kodak stays the benchmark, never used to pick
# checkpoints), and the default bundle to continue, into gpu_data/. The tracked weights are
# larger than what travels: `git rm -r -q --cached codec/weights bench/weights` before the
# GPU call (and `git reset -q -- codec/weights bench/weights` after it), carry gpu_data.
gpu-data: $(STAMP)
	rm -rf gpu_data
	$(PY) bench/gpu_data.py --init codec/weights/default.safetensors

train-gpu: $(STAMP)
	PYTHON=$(PY) bash bench/train_gpu.sh

# Native libFuzzer run of the C++ decoder under ASan/UBSan (needs clang and libFuzzer:
# apt-get install clang libclang-rt-dev). FUZZ_SECONDS=600 by default.
FUZZ_SECONDS ?= 600
build/fuzz_decoder: fuzz/fuzz_decoder.cc $(wildcard csrc/*.h csrc/*.cc)
	mkdir -p build
	clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -ffp-contract=off -Icsrc fuzz/fuzz_decoder.cc csrc/range_coder.cc csrc/batch.cc -o $@

fuzz: build/fuzz_decoder $(STAMP)
	mkdir -p fuzz/corpus/native fuzz/corpus/pqm
	build/fuzz_decoder -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz/corpus/native
	$(PY) fuzz/fuzz_pqm.py -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz/corpus/pqm

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
