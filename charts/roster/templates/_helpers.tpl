{{/* Chart name, overridable. */}}
{{- define "roster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or just the release name when it already
contains the chart name. Truncated to 63 characters (the DNS label limit of some fields).
*/}}
{{- define "roster.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "roster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "roster.labels" -}}
helm.sh/chart: {{ include "roster.chart" . }}
{{ include "roster.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roster
{{- end }}

{{/* Labels that select the operator's pods; immutable in a Deployment, so keep them stable. */}}
{{- define "roster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount the pods run as. */}}
{{- define "roster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "roster.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository plus digest, or plus tag (default: appVersion). */}}
{{- define "roster.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* External base URL: publicUrl, else derived from the Ingress host, else the Service's
cluster DNS name. Never empty: without it Roster serves no SAML (the ACS URL and audience must
not come from request headers). */}}
{{- define "roster.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if .Values.ingress.enabled }}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) (required "ingress.host is required when ingress.enabled is true" .Values.ingress.host) }}
{{- else }}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" (not (empty .Values.tls.secretName))) (include "roster.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}
{{- end }}

{{/* Name of the Ingress' TLS Secret. */}}
{{- define "roster.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "roster.fullname" .)) .Values.ingress.tls.secretName }}
{{- end }}

{{/* The Secret holding the session key: the values' own, or the one the chart generates. */}}
{{- define "roster.sessionKeySecretName" -}}
{{- default (printf "%s-session-key" (include "roster.fullname" .)) .Values.sessionKey.secretName }}
{{- end }}
