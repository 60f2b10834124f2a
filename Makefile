# mailgate: the two commands of the README, and a few more.
#   make        build build/mailgate (optimised, no sanitizers)
#   make run    install missing packages, build, run with the embedded default config
#   make test   install missing packages, build with ASan+UBSan, run every test
# Meson and Ninja do the building; this file only names the builds.

PYTHON  ?= /usr/bin/python3
PYTEST  ?= $(PYTHON) -m pytest
MESON   ?= meson

.PHONY: all build run test deps test-deps unit integration clang-check lint test-tls clean

all: build

build: build/build.ninja
	ninja -C build

build/build.ninja:
	$(MESON) setup build --buildtype=release -Dtests=disabled

run: deps build
	./build/mailgate serve

deps:
	./scripts/install-deps

test-deps:
	./scripts/install-deps --test

build-test/build.ninja:
	$(MESON) setup build-test --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false -Dfault_hooks=true -Dtests=enabled

build-clang/build.ninja:
	CC=clang $(MESON) setup build-clang --buildtype=debugoptimized -Dtests=enabled

# the same code must be warning-free with both compilers
clang-check: build-clang/build.ninja
	ninja -C build-clang

# clang-tidy and cppcheck (scripts/lint; the check list and its reasons are in .clang-tidy)
lint: build-clang/build.ninja
	ninja -C build-clang
	./scripts/lint build-clang

unit: build-test/build.ninja
	ninja -C build-test
	$(MESON) test -C build-test --suite unit --print-errorlogs

integration: build-test/build.ninja
	ninja -C build-test
	MAILGATE_BIN=$(CURDIR)/build-test/mailgate $(PYTEST) -q -p no:cacheprovider tests/integration

test: test-deps
	$(MAKE) --no-print-directory clang-check
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory fuzz-smoke FUZZ_SMOKE_SECONDS=10

# testssl.sh against STARTTLS (a few minutes, so not part of `make test`)
test-tls: test-deps build/build.ninja
	ninja -C build
	./tests/tls/testssl-check ./build/mailgate

clean:
	rm -rf build build-test build-clang build-fuzz

# libFuzzer targets (fuzz/README.md), built with clang in their own build dir.
#   make fuzz          every target for FUZZ_SECONDS (default 60) each; fails on any
#                      crash, leak, sanitizer report or timeout (inputs in fuzz/out/)
#   make fuzz-smoke    the same for 20 s each (make test runs it at 10 s each)
#   make fuzz-merge    add what fuzz/out/corpus found to the seed corpora in fuzz/corpus
# FUZZ_TARGETS="data session" picks targets.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=

.PHONY: fuzz fuzz-smoke fuzz-merge

build-fuzz/build.ninja:
	CC=clang $(MESON) setup build-fuzz --buildtype=debugoptimized -Dfuzz=true \
		-Db_sanitize=none -Dtests=disabled

fuzz: test-deps build-fuzz/build.ninja
	ninja -C build-fuzz fuzz
	./fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

FUZZ_SMOKE_SECONDS ?= 20
fuzz-smoke:
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

fuzz-merge: build-fuzz/build.ninja
	ninja -C build-fuzz fuzz
	./fuzz/run.sh --merge $(FUZZ_TARGETS)
