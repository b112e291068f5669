{{/* Chart name, truncated to 63 chars. */}}
{{- define "serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: RELEASE-NAME unless the release name already contains it. */}}
{{- define "serving.fullname" -}}
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

{{- define "serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "serving.labels" -}}
helm.sh/chart: {{ include "serving.chart" . }}
{{ include "serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: serving
{{- end }}

{{/* Selector labels. */}}
{{- define "serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names: operator and router. */}}
{{- define "serving.operator.fullname" -}}{{ include "serving.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end }}
{{- define "serving.router.fullname" -}}{{ include "serving.fullname" . | trunc 56 | trimSuffix "-" }}-router{{- end }}
{{- define "serving.routes.name" -}}{{ include "serving.fullname" . | trunc 56 | trimSuffix "-" }}-routes{{- end }}

{{- define "serving.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Observability settings as environment variables: the router and the operator read them; the operator also
passes them on the command line of every model server and transformer pod it creates.
*/}}
{{- define "serving.observabilityEnv" -}}
- name: SERVING_LOG_FORMAT
  value: {{ .Values.observability.logFormat | quote }}
- name: SERVING_ACCESS_LOG_SAMPLE
  value: {{ .Values.observability.accessLogSample | quote }}
{{- if .Values.observability.logger.defaultUrl }}
- name: SERVING_LOGGER_DEFAULT_URL
  value: {{ .Values.observability.logger.defaultUrl | quote }}
{{- end }}
{{- if .Values.observability.tracing.enabled }}
- name: SERVING_OTEL
  value: "1"
{{- with .Values.observability.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
