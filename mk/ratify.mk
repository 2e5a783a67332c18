# The real Ratify v1 CLI, the plugin's host in tests/ratify (test_ratify_cli.py).
# Included from the top-level Makefile (`include mk/ratify.mk`); also usable alone:
#   make -f mk/ratify.mk ratify-tool
#
#   ratify-tool   build the pinned ratify into $(ATCR_TOOLS_BIN) (idempotent: one stamp per version)
#
# A cold build (module download + compile) took ~5.3 min on 2 cores; a rebuild with a warm Go
# build cache is well under a minute.
RATIFY_VERSION := v1.4.4

ATCR_TOOLS_BIN ?= $(HOME)/.cache/atcr-tools/bin
export ATCR_TOOLS_BIN
RATIFY := $(ATCR_TOOLS_BIN)/ratify

.PHONY: ratify-tool

ratify-tool: $(RATIFY)

# Built inside the module's own directory so that its go.sum verifies every dependency:
# `go install github.com/ratify-project/ratify/cmd/ratify@v1.4.4` consults the checksum database
# instead, which answers 404 for one of Ratify's pinned pseudo-versions.
$(ATCR_TOOLS_BIN)/.ratify-$(RATIFY_VERSION):
	@mkdir -p $(ATCR_TOOLS_BIN)
	go mod download github.com/ratify-project/ratify@$(RATIFY_VERSION)
	cd "$$(go env GOMODCACHE)/github.com/ratify-project/ratify@$(RATIFY_VERSION)" && \
	  CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o $(RATIFY) ./cmd/ratify
	@rm -f $(ATCR_TOOLS_BIN)/.ratify-* && touch $@
$(RATIFY): $(ATCR_TOOLS_BIN)/.ratify-$(RATIFY_VERSION)
	@test -x $@ && touch $@
