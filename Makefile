# OpenRDU — every target creates .venv and installs the project on first use.
# Prerequisites: python3 >= 3.11, g++, make, perl.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.openrdu-installed
CONFIG   ?= small
KERNEL   ?= attention
ARGS     ?=
JOBS     ?= auto
# A short run keeps the default waveform small (the units it uses traced in full; narrow
# with ARGS="--waves-units pcu0 --waves-from 1000 --waves-to 2000").
WAVES_ARGS ?= $(if $(filter attention,$(KERNEL)),--seq 32 --head-dim 32 --unfused 0,)

.DEFAULT_GOAL := help
.PHONY: help venv sim test verilog lint waves bench paper pictures clean extras

help:
	@echo "OpenRDU targets:"
	@echo "  make sim      run the default job ($(KERNEL) on config '$(CONFIG)'); KERNEL=... ARGS='...'"
	@echo "  make test     the whole regression (pure Python, Amaranth simulator, cocotb on Verilator)"
	@echo "  make verilog  write the generated Verilog to build/verilog/"
	@echo "  make lint     Verilator --lint-only on the generated Verilog (documented waivers only)"
	@echo "  make waves    a short run of the default job with an FST waveform and a GTKWave save file"
	@echo "  make bench    measure build time and simulation speed; writes build/bench.json"
	@echo "  make paper    every effect of the paper on CONFIG: build/paper/report.md + charts"
	@echo "  make pictures regenerate the README's pictures into docs/pictures/"
	@echo "  make extras   optional (apt): gtkwave and xvfb to view waveforms, iverilog, liblz4-dev and"
	@echo "                zlib1g-dev for smaller FST files (without them FST blocks are stored raw)"
	@echo "  make clean    remove build/ (the Verilator cache in ~/.cache/openrdu stays)"
	@echo "Variables: CONFIG=small|plasticine|file.toml  KERNEL=...  ARGS=...  JOBS=auto"

# The venv is rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "OpenRDU needs python3 >= 3.11, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --disable-pip-version-check -e .
	@touch $@

venv: $(STAMP)

sim: $(STAMP)
	$(PY) -m sim run $(KERNEL) --config $(CONFIG) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) $(ARGS)

verilog: $(STAMP)
	$(PY) -m sim verilog --config $(CONFIG) --out build/verilog

lint: $(STAMP)
	$(PY) -m sim lint --config $(CONFIG)

waves: $(STAMP)
	$(PY) -m sim run $(KERNEL) --config $(CONFIG) --waves $(WAVES_ARGS) $(ARGS)
	$(PY) -m sim waves

bench: $(STAMP)
	$(PY) -m sim bench --config $(CONFIG) --out build/bench.json $(ARGS)

paper: $(STAMP)
	$(PY) -m sim paper --config $(CONFIG) $(ARGS)

pictures: $(STAMP)
	$(PY) -m sim run attention --seq 64 --head-dim 32 --trace
	$(PY) -m sim sweep gemm --param pcu_lanes=4,8 --m 64 --n 64 --k 64
	mkdir -p docs/pictures
	cp build/traces/attention.png docs/pictures/attention_timeline.png
	cp build/reports/attention.svg build/sweep/sweep.png docs/pictures/

extras:
	apt-get install -y gtkwave xvfb iverilog liblz4-dev zlib1g-dev

clean:
	rm -rf build sim_build .pytest_cache
