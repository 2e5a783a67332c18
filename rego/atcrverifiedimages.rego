# Admit only images that the atcr-verify external data provider verified.
#
# Rego v0 syntax (Gatekeeper 3.14-3.18). This file is the single source of truth: it is
# embedded verbatim in manifests/gatekeeper/constrainttemplate.yaml and in the Helm chart
# (charts/atcr-verify-provider/files/), and `make rego-test` fails when a copy drifts.
#
# Parameters (all optional):
#   provider          name of the externaldata Provider object (default "atcr-verify")
#   namespacedKeys    true: send "[namespace]image" keys so the provider applies the
#                     namespace's own trust policy (ConfigMap key policy.<namespace>.yaml)
#   reportUnverified  true: "report" mode for a constraint with enforcementAction warn/dryrun.
#                     It only reports images the provider admitted WITHOUT verifying them
#                     (audit-action policies, signature: false, defaultAction allow); every
#                     other outcome is left to the enforcing constraint (reportUnverified
#                     false, the default), which in turn never denies an admitted image.
#
# Fail closed: a system error, an item error, a value without allowed: true, a missing
# answer or a missing external_data result all raise a violation in enforcing mode.
# status_code is never consulted (Gatekeeper's response cache answers with status 0).
package atcrverifiedimages

# --- the object's pod specs ----------------------------------------------------------------

template_kinds := {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}

container_fields := ["containers", "initContainers", "ephemeralContainers"]

pod_specs(obj) = specs {
	specs := ({s | obj.kind == "Pod"; s := obj.spec} | {s | template_kinds[obj.kind]; s := obj.spec.template.spec}) | {s | obj.kind == "CronJob"; s := obj.spec.jobTemplate.spec.template.spec}
}

# every image field of an object, whatever its type
image_fields(obj) = fields {
	fields := {c.image |
		spec := pod_specs(obj)[_]
		c := spec[container_fields[_]][_]
	}
}

all_images := image_fields(input.review.object)

images := {img | img := all_images[_]; is_string(img)}

# On UPDATE only images the old object did not already run are checked: metadata and
# finalizer updates of running workloads never depend on the provider, and a new or
# changed image (including an added ephemeral container) is always checked. Audit
# reviews have no operation and check everything.
old_images := image_fields(input.review.oldObject) {
	input.review.operation == "UPDATE"
} else := set()

checked_images := images - old_images

# --- keys -------------------------------------------------------------------------------

provider_name := p {
	p := input.parameters.provider
	is_string(p)
	p != ""
} else := "atcr-verify"

namespaced_keys {
	input.parameters.namespacedKeys == true
}

report_mode {
	input.parameters.reportUnverified == true
}

review_namespace := ns {
	ns := input.review.object.metadata.namespace
	is_string(ns)
	ns != ""
} else := ns {
	ns := input.review.namespace
	is_string(ns)
} else := ""

key_for(img) := k {
	namespaced_keys
	k := sprintf("[%s]%s", [review_namespace, img])
}

key_for(img) := img {
	not namespaced_keys
}

# key -> image (the mapping is injective, so the comprehension never conflicts)
key_image := {key_for(img): img | img := checked_images[_]}

keys := {k | key_image[k]}

# --- the one external_data call ------------------------------------------------------------

response := external_data({"provider": provider_name, "keys": sort(keys)}) {
	count(keys) > 0
}

has_system_error {
	e := response.system_error
	e != null
	e != ""
}

answered[k] {
	k := response.responses[_][0]
}

answered[k] {
	k := response.errors[_][0]
}

value_reason(v) := r {
	r := v.reason
	is_string(r)
	r != ""
} else := "the provider did not answer allowed: true"

image_of(k) := img {
	img := key_image[k]
} else := k

# --- enforcing mode -------------------------------------------------------------------------

violation[{"msg": msg, "details": {"images": sort(keys), "provider": provider_name}}] {
	not report_mode
	has_system_error
	msg := sprintf("atcr-verify: images could not be verified (provider %s system error: %v); denied (fail closed)", [provider_name, response.system_error])
}

violation[{"msg": msg, "details": {"image": image_of(e[0]), "key": e[0]}}] {
	not report_mode
	e := response.errors[_]
	msg := sprintf("atcr-verify: image %s denied: %v", [image_of(e[0]), e[1]])
}

violation[{"msg": msg, "details": {"image": image_of(r[0]), "key": r[0]}}] {
	not report_mode
	r := response.responses[_]
	not r[1].allowed == true
	msg := sprintf("atcr-verify: image %s denied: %v", [image_of(r[0]), value_reason(r[1])])
}

violation[{"msg": msg, "details": {"image": key_image[k], "key": k}}] {
	not report_mode
	not has_system_error
	keys[k]
	not answered[k]
	msg := sprintf("atcr-verify: image %s denied: no answer from provider %s (fail closed)", [key_image[k], provider_name])
}

violation[{"msg": msg, "details": {"image": img}}] {
	not report_mode
	img := all_images[_]
	not is_string(img)
	msg := sprintf("atcr-verify: image field %v is not a string; denied", [img])
}

# --- report mode (enforcementAction: warn) --------------------------------------------------

violation[{"msg": msg, "details": {"image": image_of(r[0]), "key": r[0], "policy": policy}}] {
	report_mode
	r := response.responses[_]
	v := r[1]
	v.allowed == true
	not v.verified == true
	policy := object.get(v, "policy", "")
	msg := sprintf("atcr-verify: image %s admitted WITHOUT verification (policy %v): %s", [image_of(r[0]), policy, value_reason(v)])
}
