# sandbox-runner: the two entry points are `make demo` and `make test`.
# Each installs what is missing (Debian packages, the Python venv) before it builds.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := .build/debug/sandbox-runner
APT_PACKAGES := bubblewrap libcurl4-openssl-dev libarchive-dev libseccomp-dev pkg-config procps python3 python3-venv util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup apt venv build release bench clean install

demo: setup build
	$(BIN) run identify_churn_risk --demo

test: setup build
	swift test
	$(PY) -m pytest -q Tests/driver Tests/posthog-local Tests/e2b Tests/templates Tests/mcp Tests/http

setup: apt venv

# Debian packages: installed only when something is missing.
apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt tools/posthog-local/requirements.txt
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

build:
	swift build

release:
	swift build -c release --static-swift-stdlib

bench: setup release
	Benchmarks/run

clean:
	rm -rf .build $(VENV)

# Installs the binary and what it ships (Templates/, sandbox/, tools/) under PREFIX; the binary
# finds them in $(PREFIX)/share/sandbox-runner from any working directory.
PREFIX ?= /usr/local
install: release
	install -d $(PREFIX)/bin $(PREFIX)/share/sandbox-runner
	install -m 755 .build/release/sandbox-runner $(PREFIX)/bin/sandbox-runner
	cp -R Templates sandbox tools $(PREFIX)/share/sandbox-runner/
	find $(PREFIX)/share/sandbox-runner -name __pycache__ -prune -exec rm -rf {} +
