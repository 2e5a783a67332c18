# Kubernetes artifacts: Rego tests, manifests and Helm chart checks, and the tools they need.
# Included from the top-level Makefile (`include mk/k8s.mk`); also usable alone:
#   make -f mk/k8s.mk k8s-check
#
#   tools            build the pinned opa, helm, kubeconform into $(ATCR_TOOLS_BIN) (idempotent)
#   rego-test        opa check/fmt/test of rego/ + drift checks (capabilities.json, Rego copies)
#   rego-sync        regenerate rego/capabilities.json and the Rego copies after editing the .rego
#   chart-lint       helm lint + helm template (several value sets) + kubeconform of the output
#   manifests-check  gen-certs.sh into a temp dir + kubeconform of manifests/ and its output
#   k8s-check        all of the above, plus the Python tests in tests/k8s
K8S_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(K8S_MK_DIR)/versions.mk

ATCR_TOOLS_BIN ?= $(HOME)/.cache/atcr-tools/bin
export ATCR_TOOLS_BIN
K8S_PYTHON ?= python3
K8S_TOOLS := $(K8S_PYTHON) $(K8S_MK_DIR)/k8s_tools.py
OPA := $(ATCR_TOOLS_BIN)/opa
HELM := $(ATCR_TOOLS_BIN)/helm
KUBECONFORM := $(ATCR_TOOLS_BIN)/kubeconform
CHART := charts/atcr-verify-provider
CHART_KUBE_VERSION := $(patsubst v%,%,$(KUBERNETES_VERSION))
# Stripped, path-independent builds; a shared build cache across the three tools.
TOOLS_GOFLAGS := -trimpath -buildvcs=false
TOOLS_LDFLAGS := -s -w

.PHONY: tools rego-test rego-sync chart-lint manifests-check k8s-check k8s-pytest

tools: $(OPA) $(HELM) $(KUBECONFORM)

# One stamp per version: bumping a pin in versions.mk rebuilds that tool.
$(ATCR_TOOLS_BIN)/.opa-$(OPA_VERSION):
	@mkdir -p $(ATCR_TOOLS_BIN)
	GOBIN=$(ATCR_TOOLS_BIN) GOFLAGS="$(TOOLS_GOFLAGS)" go install -ldflags="$(TOOLS_LDFLAGS)" github.com/open-policy-agent/opa@$(OPA_VERSION)
	@rm -f $(ATCR_TOOLS_BIN)/.opa-* && touch $@
$(OPA): $(ATCR_TOOLS_BIN)/.opa-$(OPA_VERSION)
	@test -x $@ && touch $@

$(ATCR_TOOLS_BIN)/.helm-$(HELM_VERSION):
	@mkdir -p $(ATCR_TOOLS_BIN)
	GOBIN=$(ATCR_TOOLS_BIN) GOFLAGS="$(TOOLS_GOFLAGS)" go install -ldflags="$(TOOLS_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@rm -f $(ATCR_TOOLS_BIN)/.helm-* && touch $@
$(HELM): $(ATCR_TOOLS_BIN)/.helm-$(HELM_VERSION)
	@test -x $@ && touch $@

$(ATCR_TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION):
	@mkdir -p $(ATCR_TOOLS_BIN)
	GOBIN=$(ATCR_TOOLS_BIN) GOFLAGS="$(TOOLS_GOFLAGS)" go install -ldflags="$(TOOLS_LDFLAGS)" github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	@rm -f $(ATCR_TOOLS_BIN)/.kubeconform-* && touch $@
$(KUBECONFORM): $(ATCR_TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION)
	@test -x $@ && touch $@

rego-test: $(OPA)
	$(K8S_TOOLS) capabilities --check
	$(K8S_TOOLS) sync-rego --check
	$(OPA) check --strict --capabilities rego/capabilities.json rego/
	@test -z "$$($(OPA) fmt --list rego/)" || { echo "rego/ is not opa-fmt formatted: $(OPA) fmt -w rego/"; exit 1; }
	$(OPA) test rego/ -v --capabilities rego/capabilities.json

rego-sync: $(OPA)
	$(K8S_TOOLS) capabilities
	$(K8S_TOOLS) sync-rego

# Every values file in the chart's ci/ is linted, rendered and validated.
chart-lint: $(HELM) $(KUBECONFORM)
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for vals in $(CHART)/ci/*.yaml; do \
	  echo "helm lint --strict -f $$vals"; \
	  $(HELM) lint --strict --kube-version $(CHART_KUBE_VERSION) -n gatekeeper-system -f $$vals $(CHART); \
	  echo "helm template -f $$vals"; \
	  $(HELM) template atcr-verify-provider $(CHART) -n gatekeeper-system --kube-version $(CHART_KUBE_VERSION) \
	    -f $$vals > "$$out/$$(basename $$vals)"; \
	done; \
	$(K8S_TOOLS) validate "$$out"/*.yaml

manifests-check: $(KUBECONFORM)
	@set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	bash manifests/gen-certs.sh "$$out/certs" 2>/dev/null; \
	$(K8S_TOOLS) validate manifests/provider/*.yaml manifests/gatekeeper/*.yaml manifests/constraints/*.yaml \
	  "$$out/certs/tls-secret.yaml" "$$out/certs/provider.yaml"

k8s-pytest: tools
	$(K8S_PYTHON) -m pytest tests/k8s -q

k8s-check: rego-test chart-lint manifests-check k8s-pytest
