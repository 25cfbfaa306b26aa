# makuo — build, test and lab targets. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# go from PATH, else where Debian's instructions put it (a fresh machine may
# have Go installed but not on PATH).
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN     ?= bin
PREFIX  ?= /usr/local
SYSTEMDUNITDIR ?= /lib/systemd/system
FUZZTIME ?= 10s

.PHONY: sim promtool-check unit-check docs deb help build test vet race unit lint fuzz-short tidy-check lab-up lab-down demo bench bench-segments install clean deps

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build makuosan and msync into ./bin
	$(GO) build -o $(BIN)/ ./cmd/makuosan ./cmd/msync

DEMO_PKGS := iproute2 nftables
TEST_PKGS := $(DEMO_PKGS) prometheus systemd chromium fonts-dejavu-core dpkg-dev systemd-container zsh man-db smcroute xfsprogs btrfs-progs e2fsprogs
# The bench compares makuo with rsync and uftp on the same lab.
BENCH_PKGS := $(TEST_PKGS) rsync uftp curl

deps: ## install Debian packages (root): the demo's; with test or bench in the goals (make deps test) or DEPS=test|bench what those need
	@pkgs="$(DEMO_PKGS)"; \
	if [ -n "$(filter test race,$(MAKECMDGOALS))" ] || [ "$(DEPS)" = test ]; then pkgs="$(TEST_PKGS)"; fi; \
	if [ -n "$(filter bench bench-segments,$(MAKECMDGOALS))" ] || [ "$(DEPS)" = bench ]; then pkgs="$(BENCH_PKGS)"; fi; \
	echo "installing: $$pkgs"; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null

SIM_SEEDS ?= 1500

test: lint promtool-check unit-check race sim fuzz-short ## the whole suite: lint, race-enabled unit and lab tests, the simulation, short fuzzing (needs root for the lab)

vet: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

lint: vet ## gofmt, go vet, go.mod tidiness
	$(MAKE) --no-print-directory tidy-check

tidy-check: ## fail if go.mod/go.sum are not tidy
	@cp go.mod /tmp/makuo-go.mod.bak; cp go.sum /tmp/makuo-go.sum.bak
	@$(GO) mod tidy
	@if ! diff -q go.mod /tmp/makuo-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/makuo-go.sum.bak >/dev/null; then \
		cp /tmp/makuo-go.mod.bak go.mod; cp /tmp/makuo-go.sum.bak go.sum; echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; fi

race: ## every test with the race detector, then the netns lab tests (alone: they time real daemons)
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -race -count=1 -timeout 15m ./e2e

sim: ## the seeded whole-cluster simulation, $(SIM_SEEDS) seeds (a failing seed prints the command that replays it)
	$(GO) test -count=1 -run '^(TestSimulation|TestScaleSmallFiles|TestShapedLink|TestRandomLossKeepsSpeed)$$' -v ./replicator/sim -sim.seeds=$(SIM_SEEDS) | grep -E '^(---|ok|FAIL|PASS)|figure:|seeds from|seed [0-9]+:'

unit: ## tests without the race detector (quicker)
	$(GO) test -count=1 ./...

fuzz-short: ## run each fuzz target for $(FUZZTIME) (a crasher fails; the fuzz engine's spurious exits are told apart)
	GO=$(GO) FUZZTIME=$(FUZZTIME) deploy/ci/fuzz-short.sh

lab-up: build ## create a 4-host lab (network namespaces) named "lab"
	deploy/lab/lab.sh up lab 4

lab-down: ## remove the lab
	deploy/lab/lab.sh down lab

demo: build ## run a local 4-member demo cluster in network namespaces (root)
	deploy/lab/demo.sh $(BIN)

bench: ## print performance figures (root)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	GO=$(GO) bash deploy/bench/transfer.sh

bench-segments: ## print issue 15's figures: relays across segments, unicast mode (root)
	GO=$(GO) bash deploy/bench/segments.sh

install: build ## install binaries, systemd unit and defaults (DESTDIR, PREFIX; never overwrites /etc/default/makuosan)
	install -D -m 0755 $(BIN)/makuosan $(DESTDIR)$(PREFIX)/sbin/makuosan
	install -D -m 0755 $(BIN)/msync $(DESTDIR)$(PREFIX)/bin/msync
	sed 's|/usr/local/sbin/makuosan|$(PREFIX)/sbin/makuosan|' deploy/systemd/makuosan.service > $(BIN)/makuosan.service
	install -D -m 0644 $(BIN)/makuosan.service $(DESTDIR)$(SYSTEMDUNITDIR)/makuosan.service
	@if [ -e $(DESTDIR)/etc/default/makuosan ]; then \
		echo "keeping existing $(DESTDIR)/etc/default/makuosan (new one: deploy/systemd/makuosan.default)"; \
	else \
		install -D -m 0644 deploy/systemd/makuosan.default $(DESTDIR)/etc/default/makuosan; \
	fi

promtool-check: ## check the Prometheus example config and alert rules, and run the rules' unit tests
	cd deploy/prometheus && promtool check config prometheus.yml && promtool check rules rules.yml && promtool test rules rules_test.yml

unit-check: build ## systemd-analyze verify the unit (fails on any warning)
	@tmp=$$(mktemp -d); \
	sed 's|/usr/local/sbin/makuosan|$(CURDIR)/$(BIN)/makuosan|' deploy/systemd/makuosan.service > $$tmp/makuosan.service; \
	out=$$(systemd-analyze verify $$tmp/makuosan.service 2>&1) || { echo "$$out"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp; \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; echo "makuosan.service: ok"

deb: ## build the Debian package into ./bin (makuosan_VERSION_ARCH.deb; needs dpkg-dev)
	GO=$(GO) deploy/deb/build.sh $(BIN)

docs: ## regenerate the manual pages and shell completions under deploy/ from the flags
	$(GO) test -count=1 -run '^TestGeneratedDocs$$' ./cmd/makuosan ./cmd/msync -args -update-docs

clean: ## remove build output
	rm -rf $(BIN)
