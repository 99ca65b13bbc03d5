# sandbox-runner: the two entry points are `make demo` and `make test`.
# Each installs what is missing (Debian packages, the Python venv) before it builds.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := .build/debug/sandbox-runner
APT_PACKAGES := bubblewrap libcurl4-openssl-dev libssl-dev libarchive-dev libseccomp-dev pkg-config procps python3 python3-venv util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup apt venv build release debug bench clean install man

demo: setup build
	$(BIN) run identify_churn_risk --demo

# A skipped test fails the run (Swift and pytest alike) unless SANDBOX_RUNNER_ALLOW_SKIPS=1: a green
# run means every test ran. Skips print their reason.
test: setup build
	swift test 2>&1 | tee .build/swift-test.log; test $${PIPESTATUS[0]} -eq 0
	@if grep -E '^[^ ]+ Test .* skipped' .build/swift-test.log && [ "$${SANDBOX_RUNNER_ALLOW_SKIPS:-}" != 1 ]; then \
	  echo "Skipped Swift tests (above) fail this run; set SANDBOX_RUNNER_ALLOW_SKIPS=1 where a skip is expected."; exit 1; fi
	$(PY) -m pytest -q -rs Tests/driver Tests/posthog-local Tests/e2b Tests/egress Tests/templates Tests/mcp Tests/http Tests/extract Tests/report Tests/install

setup: apt venv

# Debian packages: installed only when something is missing.
apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

# The venv is made anew from the lock (every transitive package pinned, with hashes) whenever the
# lock changes, so a developer's venv and CI's hold the same packages. tools/lock-python rewrites
# the locks after a change to requirements-dev.txt or tools/posthog-local/requirements.txt.
$(VENV)/.installed: requirements-dev.lock
	rm -rf $(VENV)
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-dev.lock
	touch $@

build:
	swift build

debug: build

release:
	swift build -c release --static-swift-stdlib

bench: setup release
	Benchmarks/run

clean:
	rm -rf .build $(VENV)

# Installs the binary and what it ships (Templates/, sandbox/, tools/) under PREFIX, shell completion
# (bash, zsh, fish) and the man page under PREFIX/share, with the
# Python venv that `--demo` needs (posthog-local's locked packages) at
# $(PREFIX)/share/sandbox-runner/.venv; the binary finds all of it from any working directory.
# INSTALL_CONFIG=debug installs the debug build (the install test uses it to skip a release build).
PREFIX ?= /usr/local
INSTALL_CONFIG ?= release
SHARE := $(PREFIX)/share/sandbox-runner
install: apt $(INSTALL_CONFIG)
	install -d $(PREFIX)/bin $(SHARE)
	install -m 755 .build/$(INSTALL_CONFIG)/sandbox-runner $(PREFIX)/bin/sandbox-runner
	rm -rf $(SHARE)/Templates $(SHARE)/sandbox $(SHARE)/tools
	cp -R Templates sandbox tools $(SHARE)/
	find $(SHARE) -name __pycache__ -prune -exec rm -rf {} +
	rm -rf $(SHARE)/.venv
	/usr/bin/python3 -m venv $(SHARE)/.venv
	$(SHARE)/.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
	  -r tools/posthog-local/requirements.lock
	install -d $(PREFIX)/share/bash-completion/completions $(PREFIX)/share/zsh/site-functions \
	  $(PREFIX)/share/fish/vendor_completions.d $(PREFIX)/share/man/man1
	$(PREFIX)/bin/sandbox-runner --generate-completion-script bash > $(PREFIX)/share/bash-completion/completions/sandbox-runner
	$(PREFIX)/bin/sandbox-runner --generate-completion-script zsh > $(PREFIX)/share/zsh/site-functions/_sandbox-runner
	$(PREFIX)/bin/sandbox-runner --generate-completion-script fish > $(PREFIX)/share/fish/vendor_completions.d/sandbox-runner.fish
	$(MAKE) -s man INSTALL_CONFIG=$(INSTALL_CONFIG)
	install -m 644 .build/man/sandbox-runner.1 $(PREFIX)/share/man/man1/sandbox-runner.1

# The man page, from swift-argument-parser's generate-manual plugin (one page, every subcommand).
man:
	rm -rf .build/man
	find .build/plugins -path '*GenerateManual*' -name 'sandbox-runner*.1' -delete 2>/dev/null || true
	swift package plugin generate-manual --configuration $(INSTALL_CONFIG) >/dev/null
	install -d .build/man
	cp "$$(find .build/plugins -path '*GenerateManual*' -name sandbox-runner.1 | head -n1)" .build/man/sandbox-runner.1
