# Tests for atcrverifiedimages.rego: `opa test rego/ -v --capabilities rego/capabilities.json`
# (make rego-test). external_data is declared in rego/capabilities.json and mocked with `with`.
package atcrverifiedimages

# --- a mock provider ------------------------------------------------------------------------
# Keys are answered by what their name contains:
#   "good"     -> allowed, verified         "audit"   -> allowed, NOT verified
#   "denied"   -> item error                "negative"-> value allowed: false
#   "noallow"  -> value without allowed      "scalar"  -> value is a bare string
#   "missing"  -> no answer at all

good_value := {"allowed": true, "verified": true, "digest": "sha256:aaaa", "did": "did:plc:alice", "policy": "production-images", "reason": "signed by trusted DID did:plc:alice"}

mock_value(k) := good_value {
	contains(k, "good")
}

mock_value(k) := {"allowed": true, "verified": false, "digest": "sha256:bbbb", "did": "", "policy": "dev-images", "reason": "audit only: no signature artifact"} {
	contains(k, "audit")
}

mock_value(k) := {"allowed": false, "verified": false, "reason": "explicitly not allowed"} {
	contains(k, "negative")
}

mock_value(k) := {"verified": true} {
	contains(k, "noallow")
}

mock_value(k) := "allowed" {
	contains(k, "scalar")
}

mock_error(k) := sprintf("untrusted signer did:plc:mallory for %s", [k]) {
	contains(k, "denied")
}

mock_provider(req) := {
	"responses": [[k, v] | k := req.keys[_]; v := mock_value(k)],
	"errors": [[k, e] | k := req.keys[_]; e := mock_error(k)],
	"status_code": 200,
	"system_error": "",
}

# Gatekeeper's answer when the provider is unreachable: no items at all.
mock_down(_) := {"responses": null, "errors": null, "status_code": 500, "system_error": "failed to send external data request: dial tcp 10.0.0.1:8443: connect: connection refused"}

# All keys served from Gatekeeper's response cache: no HTTP call, status_code 0.
mock_cache_hit(req) := {
	"responses": [[k, good_value] | k := req.keys[_]],
	"errors": [],
	"status_code": 0,
	"system_error": "",
}

# external_data itself undefined (e.g. a non-string key in a hand-written template).
mock_undefined(req) := x {
	req.never_set == true
	x := {}
}

# A provider that only answers when the request is exactly what we expect: one call,
# deduplicated, sorted keys, to the named provider.
expected_request := {"provider": "atcr-verify", "keys": ["docker.io/library/busybox:good", "registry.example/app:good", "registry.example/sidecar:good"]}

mock_strict(req) := mock_provider(req) {
	req == expected_request
} else := {"responses": [], "errors": [], "status_code": 200, "system_error": sprintf("unexpected request %v", [req])}

mock_always_fails(_) := {"responses": [], "errors": [], "status_code": 200, "system_error": "provider was called"}

# --- fixtures -------------------------------------------------------------------------------

pod(containers) := {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"}, "spec": {"containers": containers}}

pod_full(containers, init, ephemeral) := {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"}, "spec": {"containers": containers, "initContainers": init, "ephemeralContainers": ephemeral}}

c(img) := {"name": "c", "image": img}

review(obj) := {"review": {"kind": {"group": "", "version": "v1", "kind": obj.kind}, "operation": "CREATE", "namespace": "team-a", "object": obj}, "parameters": {}}

review_params(obj, params) := {"review": {"operation": "CREATE", "namespace": "team-a", "object": obj}, "parameters": params}

update_review(old, new) := {"review": {"operation": "UPDATE", "namespace": "team-a", "object": new, "oldObject": old}, "parameters": {}}

template_spec := {"containers": [c("registry.example/app:denied")], "initContainers": [c("registry.example/init:good")]}

workload(kind) := {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w", "namespace": "team-a"}, "spec": {"template": {"spec": template_spec}}}

msgs(inp) := {m | v := violation[_] with input as inp with external_data as mock_provider; m := v.msg}

# --- Pods -----------------------------------------------------------------------------------

test_verified_pod_admitted {
	count(violation) == 0 with input as review(pod([c("registry.example/app:good")])) with external_data as mock_provider
}

test_denied_pod_carries_provider_reason {
	m := msgs(review(pod([c("registry.example/app:denied")])))
	count(m) == 1
	m["atcr-verify: image registry.example/app:denied denied: untrusted signer did:plc:mallory for registry.example/app:denied"]
}

test_one_bad_image_among_good_ones_is_denied {
	m := msgs(review(pod([c("registry.example/app:good"), c("registry.example/bad:denied")])))
	count(m) == 1
	some x
	m[x]
	contains(x, "registry.example/bad:denied")
}

test_init_container_checked {
	count(msgs(review(pod_full([c("a/app:good")], [c("a/init:denied")], [])))) == 1
}

test_ephemeral_container_checked {
	count(msgs(review(pod_full([c("a/app:good")], [], [c("a/debug:denied")])))) == 1
}

test_allowed_false_denied {
	m := msgs(review(pod([c("a/app:negative")])))
	m["atcr-verify: image a/app:negative denied: explicitly not allowed"]
}

test_value_without_allowed_denied {
	m := msgs(review(pod([c("a/app:noallow")])))
	m["atcr-verify: image a/app:noallow denied: the provider did not answer allowed: true"]
}

test_scalar_value_denied {
	count(msgs(review(pod([c("a/app:scalar")])))) == 1
}

test_missing_answer_fails_closed {
	m := msgs(review(pod([c("a/app:good"), c("a/app:missing")])))
	m["atcr-verify: image a/app:missing denied: no answer from provider atcr-verify (fail closed)"]
	count(m) == 1
}

test_system_error_fails_closed_once {
	vs := violation with input as review(pod([c("a/one:good"), c("a/two:good")])) with external_data as mock_down
	count(vs) == 1
	some v
	vs[v]
	contains(v.msg, "connection refused")
	v.details.images == ["a/one:good", "a/two:good"]
}

test_undefined_external_data_fails_closed {
	vs := violation with input as review(pod([c("a/one:good"), c("a/two:good")])) with external_data as mock_undefined
	count(vs) == 2
}

test_cache_hit_status_zero_admitted {
	count(violation) == 0 with input as review(pod([c("a/app:good")])) with external_data as mock_cache_hit
}

test_non_string_image_denied {
	m := msgs(review(pod([c("a/app:good"), {"name": "x", "image": 42}])))
	m["atcr-verify: image field 42 is not a string; denied"]
}

# --- batching -------------------------------------------------------------------------------

test_one_call_with_sorted_deduplicated_keys {
	obj := pod_full(
		[c("registry.example/sidecar:good"), c("registry.example/app:good")],
		[c("registry.example/app:good"), c("docker.io/library/busybox:good")],
		[c("registry.example/sidecar:good")],
	)
	count(violation) == 0 with input as review(obj) with external_data as mock_strict
}

test_strict_mock_rejects_other_requests {
	count(violation) == 1 with input as review(pod([c("other:good")])) with external_data as mock_strict
}

test_provider_name_parameter {
	inp := review_params(pod([c("a/app:good")]), {"provider": "my-provider"})
	vs := violation with input as inp with external_data as mock_always_fails
	some v
	vs[v]
	contains(v.msg, "provider my-provider system error")
}

test_object_without_images_makes_no_call {
	obj := {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}
	count(violation) == 0 with input as review(obj) with external_data as mock_always_fails
}

test_pod_without_containers_makes_no_call {
	count(violation) == 0 with input as review({"kind": "Pod", "spec": {}}) with external_data as mock_always_fails
}

# --- workloads (pod templates) --------------------------------------------------------------

test_workload_kinds_denied_via_pod_template {
	every_kind := ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"]
	denied := {kind |
		kind := every_kind[_]
		m := msgs(review(workload(kind)))
		m["atcr-verify: image registry.example/app:denied denied: untrusted signer did:plc:mallory for registry.example/app:denied"]
		count(m) == 1
	}
	count(denied) == count(every_kind)
}

test_cronjob_denied_via_job_template {
	obj := {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "team-a"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": template_spec}}}}}
	count(msgs(review(obj))) == 1
}

test_good_deployment_admitted {
	obj := {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [c("a/app:good")]}}}}
	count(violation) == 0 with input as review(obj) with external_data as mock_provider
}

# --- UPDATE ---------------------------------------------------------------------------------

test_update_with_unchanged_images_makes_no_call {
	old := pod([c("a/app:denied")])
	new := json.patch(old, [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])
	count(violation) == 0 with input as update_review(old, new) with external_data as mock_always_fails
}

test_update_checks_new_images_only {
	old := pod([c("a/old:denied")])
	new := pod_full([c("a/old:denied")], [], [c("a/debug:denied")])
	m := msgs(update_review(old, new))
	count(m) == 1
	some x
	m[x]
	contains(x, "a/debug:denied")
}

test_changed_deployment_image_checked {
	old := {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [c("a/app:good")]}}}}
	new := {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [c("a/app:denied")]}}}}
	count(msgs(update_review(old, new))) == 1
}

# --- namespaced keys ------------------------------------------------------------------------

test_namespaced_keys {
	inp := review_params(pod([c("a/app:good"), c("a/bad:denied")]), {"namespacedKeys": true})
	keys == {"[team-a]a/app:good", "[team-a]a/bad:denied"} with input as inp
	m := msgs(inp)
	m["atcr-verify: image a/bad:denied denied: untrusted signer did:plc:mallory for [team-a]a/bad:denied"]
	count(m) == 1
}

test_namespaced_keys_fall_back_to_request_namespace {
	obj := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [c("a/app:good")]}}
	keys == {"[team-a]a/app:good"} with input as review_params(obj, {"namespacedKeys": true})
}

test_plain_keys_by_default {
	keys == {"a/app:good"} with input as review(pod([c("a/app:good")]))
}

# --- report mode (the enforcementAction: warn constraint) -----------------------------------

test_enforcing_mode_admits_audit_only_images {
	count(violation) == 0 with input as review(pod([c("a/app:audit")])) with external_data as mock_provider
}

test_report_mode_reports_unverified_only {
	inp := review_params(pod([c("a/app:audit"), c("a/app:good"), c("a/app:denied"), c("a/app:missing")]), {"reportUnverified": true})
	vs := violation with input as inp with external_data as mock_provider
	count(vs) == 1
	some v
	vs[v]
	v.msg == "atcr-verify: image a/app:audit admitted WITHOUT verification (policy dev-images): audit only: no signature artifact"
	v.details.policy == "dev-images"
}

test_report_mode_silent_on_system_error {
	inp := review_params(pod([c("a/app:audit")]), {"reportUnverified": true})
	count(violation) == 0 with input as inp with external_data as mock_down
}

test_report_false_is_enforcing {
	inp := review_params(pod([c("a/app:denied")]), {"reportUnverified": false, "namespacedKeys": false})
	count(violation) == 1 with input as inp with external_data as mock_provider
}
