# Two entry points from a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := espeak-ng sox libsndfile1

.PHONY: demo test setup system-deps bench clean

# Debian packages for test speech (espeak-ng, sox) and audio files (libsndfile); skipped when present.
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch and torchvision are pinned in pyproject.toml; unpinned, pip would fetch a multi-GB build.
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(VENV)/bin/shopfloor run scenarios/smart_factory.yaml

test: setup
	$(PY) -m pytest -q --durations=15

bench: setup
	$(PIP) install -q -e '.[bench]'
	$(PY) benchmarks/line_vs_simpy.py
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/defect_cnn.py
	$(PY) benchmarks/clip_bench.py
	$(PY) benchmarks/inspection_plant.py
	$(PY) benchmarks/voice.py
	$(PY) benchmarks/routing.py
	$(PY) benchmarks/dispatch_plant.py
	$(PY) benchmarks/rl_controllers.py
	$(PY) benchmarks/pcgym_peer.py

clean:
	rm -rf $(VENV) runs .pytest_cache
