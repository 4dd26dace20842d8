# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both create .venv, install lnpt with every extra and the test tools into it ('.[all,test]';
# docs/DEPENDENCIES.md), and need no network beyond the package registries.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test data clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,test]'

# Fashion-MNIST from Debian's package when apt-get is available (else lnpt downloads it,
# or falls back to the bundled digits set when nothing can be had).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
		echo "note: could not install dataset-fashion-mnist with apt-get"; fi

demo: install data
	$(BIN)/lnpt demo

test: install data
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
