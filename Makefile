# securechat — run `make help` for the targets.
GO       ?= go
BIN      ?= bin/securechat
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
SOAKTIME ?= 10m
FUZZTIME ?= 30s
BENCHFLAGS ?= -clients 64 -duration 10s

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2 # .ci/run names the same version

.PHONY: help build serve chat test test-race check fuzz soak bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

build: ## build the static binary into bin/securechat
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

serve: build ## run the server on its embedded defaults (QUIC :4433, data ./securechat-data)
	$(BIN) serve

chat: build ## run the terminal client (HOME_DIR=dir for another home)
	$(BIN) chat $(if $(HOME_DIR),--home $(HOME_DIR))

test: build ## run every test: unit, end-to-end (real binary, tmux, headless chromium), fuzz seed corpora
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 9m ./...

test-race: ## every test under the race detector, the binary the end-to-end tests run built with -race too
	SECURECHAT_E2E_RACE=1 $(GO) test -race -count=1 -timeout 30m ./...

check: ## vet, staticcheck (installed from the module proxy) and the tests
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(MAKE) test

fuzz: ## run every fuzz target for FUZZTIME each (default 30s; or a count like 5000x)
	FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

soak: ## the soak test: end-to-end traffic for SOAKTIME (default 10m) while the server is restarted and crashed under it
	cd e2e && SECURECHAT_SOAK=$(SOAKTIME) $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v .

bench: build ## load benchmark against raw quic-go baselines (echo, relay, bulk stream for files); see BENCHMARKS.md
	$(GO) run ./bench -bin $(BIN) $(BENCHFLAGS)

screenshots: build ## run the browser tests and refresh docs/img/dashboard.png from their screenshots
	cd e2e && $(GO) test -count=1 -run 'TestWeb' .
	mkdir -p docs/img && cp build/screenshots/dashboard.png docs/img/dashboard.png

clean: ## remove build output
	rm -rf bin dist build
