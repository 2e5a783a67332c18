{{- define "atcr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "atcr.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "atcr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atcr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "atcr.labels" -}}
{{ include "atcr.selectorLabels" . }}
app.kubernetes.io/part-of: atcr-verifier
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "atcr.tlsSecretName" -}}
{{- if eq .Values.tls.source "existingSecret" }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "atcr.fullname" .) }}
{{- end }}
{{- end }}

{{- define "atcr.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Fail early on combinations a JSON schema cannot express. */}}
{{- define "atcr.validate" -}}
{{- if ge (float64 .Values.deadline) (float64 .Values.provider.timeout) }}
{{- fail (printf "deadline (%v s) must be below provider.timeout (%v s): Gatekeeper would cut the provider off before it answers" .Values.deadline .Values.provider.timeout) }}
{{- end }}
{{- if and (eq .Values.tls.source "existingSecret") (or (not .Values.tls.existingSecret) (not .Values.tls.caBundle)) }}
{{- fail "tls.source existingSecret needs tls.existingSecret and tls.caBundle (base64 PEM of the CA)" }}
{{- end }}
{{- end }}

{{- define "atcr.excludedNamespaces" -}}
{{- toJson (uniq (append .Values.constraints.excludedNamespaces .Release.Namespace)) }}
{{- end }}
