{{- define "turnstone.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "turnstone.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "turnstone.labels" -}}
app.kubernetes.io/name: {{ include "turnstone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "turnstone.selector" -}}
app.kubernetes.io/name: {{ include "turnstone.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "turnstone.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "turnstone.metricsAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Redis: the chart's own (redis.enabled) or the external host. */}}
{{- define "turnstone.redisHost" -}}
{{- if .Values.redis.enabled -}}
{{ .Release.Name }}-redis
{{- else -}}
{{ .Values.redis.host }}
{{- end -}}
{{- end -}}

{{/* Environment every Turnstone container gets. */}}
{{- define "turnstone.commonEnv" -}}
- name: REDIS_HOST
  value: {{ include "turnstone.redisHost" . | quote }}
- name: REDIS_PORT
  value: {{ .Values.redis.port | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    {{- /* The chart's own Redis requires the password of its Secret. */}}
    secretKeyRef: { name: {{ ternary .Values.redis.existingSecret .Values.existingSecret .Values.redis.enabled }}, key: redis-password, optional: true }
- name: TURNSTONE_JWT_SECRET
  valueFrom:
    secretKeyRef: { name: {{ .Values.existingSecret }}, key: jwt-secret }
- name: TURNSTONE_AUTH_TOKEN
  valueFrom:
    secretKeyRef: { name: {{ .Values.existingSecret }}, key: auth-token, optional: true }
- name: TURNSTONE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: TURNSTONE_LOG_FORMAT
  value: json
{{- if eq .Values.database.backend "postgresql" }}
- name: TURNSTONE_DB_BACKEND
  value: postgresql
{{- if .Values.postgresql.enabled }}
{{- with .Values.postgresql }}
- name: TURNSTONE_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ .existingSecret }}, key: postgres-password }
- name: TURNSTONE_DB_URL
  value: "postgresql://{{ .user }}:$(TURNSTONE_POSTGRES_PASSWORD)@{{ $.Release.Name }}-postgresql:5432/{{ .database }}"
{{- end }}
{{- else }}
- name: TURNSTONE_DB_URL
  valueFrom:
    secretKeyRef: { name: {{ .Values.existingSecret }}, key: database-url }
{{- end }}
{{- end }}
{{- with .Values.telemetry }}
{{- if .otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
{{- if .sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- end }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- end }}
{{- end -}}
