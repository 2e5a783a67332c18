# Versions of the Kubernetes checks (mk/k8s.mk includes this file; mk/k8s_tools.py reads it).
#
# Gatekeeper, Kubernetes and Helm are pinned ONCE for the whole project, in e2e/versions.env
# (plain KEY=value lines, shared with the e2e suite): GATEKEEPER_VERSION (CRDs for kubeconform),
# KUBERNETES_VERSION (k8s.io/kubernetes' swagger.json for kubeconform, helm --kube-version) and
# HELM_VERSION. Only the tools the e2e suite does not use are pinned here.
K8S_VERSIONS_ENV := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../e2e/versions.env
include $(K8S_VERSIONS_ENV)

# Tools built from the Go module proxy (GOBIN=$(ATCR_TOOLS_BIN) go install MODULE@VERSION).
# OPA: the newest 0.x (Rego v0 syntax by default, like Gatekeeper 3.14-3.18; 0.68.0, the one
# Gatekeeper 3.18 embeds, cannot be `go install`ed: its go.mod has a replace directive).
OPA_VERSION := v0.69.0
# Builtins the Rego may use: those of the OPA inside the OLDEST supported Gatekeeper (3.14.0
# embeds OPA v0.57.1), plus external_data. rego/capabilities.json is generated from it.
OPA_CAPABILITIES_VERSION := v0.57.1
KUBECONFORM_VERSION := v0.8.0
