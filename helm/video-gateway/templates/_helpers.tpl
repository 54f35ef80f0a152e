{{/* Names: the release's resources are <fullname>-<component>; 52 characters leave room for the suffixes. */}}
{{- define "video-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "video-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "video-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "video-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: video-gateway
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "video-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "video-gateway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "video-gateway.componentLabels" -}}
{{ include "video-gateway.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "video-gateway.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/*
Every secret file: its VG_*_FILE variable, where it is mounted (relative to secrets.mountPath), and the
Secret and key it comes from. Rendered as YAML ({files: [...]}) so templates can range over it.
*/}}
{{- define "video-gateway.secretFiles" -}}
{{- $secrets := .Values.secrets }}
{{- $fixed := list
  (list "dbUrl" "VG_DB__URL_FILE" "db-url")
  (list "upstreamApiKey" "VG_UPSTREAM__API_KEY_FILE" "upstream-api-key")
  (list "webhookSecrets" "VG_WEBHOOKS__SECRETS_FILE" "webhook-secrets")
  (list "s3AccessKeyId" "VG_S3__ACCESS_KEY_ID_FILE" "s3-access-key-id")
  (list "s3SecretAccessKey" "VG_S3__SECRET_ACCESS_KEY_FILE" "s3-secret-access-key")
  (list "adminApiKey" "VG_ADMIN_API_KEY_FILE" "admin-api-key") }}
files:
{{- range $entry := $fixed }}
{{- $ref := get $secrets (index $entry 0) }}
{{- if $ref }}
  - env: {{ index $entry 1 }}
    path: {{ index $entry 2 }}
    secret: {{ $ref.secret | default $secrets.existingSecret }}
    key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- range $name, $profile := .Values.upstreams }}
{{- range $entry := list (list "apiKey" "API_KEY" "api-key") (list "webhookSecrets" "WEBHOOK_SECRETS" "webhook-secrets") }}
{{- $ref := get $profile (index $entry 0) }}
{{- if $ref }}
  - env: {{ printf "VG_UPSTREAMS__%s__%s_FILE" (upper $name) (index $entry 1) }}
    path: {{ printf "upstreams/%s/%s" $name (index $entry 2) }}
    secret: {{ $ref.secret | default $secrets.existingSecret }}
    key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* One env value as a string: strings as they are, numbers, booleans, maps and lists as JSON. */}}
{{- define "video-gateway.envValue" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ toJson . | quote }}{{ end }}
{{- end }}

{{/* The environment every container shares: values.env, the upstream profiles and the secret files. */}}
{{- define "video-gateway.env" -}}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ include "video-gateway.envValue" $value }}
{{- end }}
{{- if .Values.upstreams }}
{{- $profiles := dict }}
{{- range $name, $profile := .Values.upstreams }}
{{- $_ := set $profiles $name ($profile.settings | default dict) }}
{{- end }}
- name: VG_UPSTREAMS
  value: {{ toJson $profiles | quote }}
{{- end }}
{{- range (include "video-gateway.secretFiles" . | fromYaml).files }}
- name: {{ .env }}
  value: {{ printf "%s/%s" $.Values.secrets.mountPath .path | quote }}
{{- end }}
{{- end }}

{{/* The secret files as one read-only projected volume, and the writable /tmp. */}}
{{- define "video-gateway.volumes" -}}
- name: secrets
  projected:
    # 0440 with fsGroup: readable by the gateway's group, nobody else.
    defaultMode: 288
    sources:
{{- range (include "video-gateway.secretFiles" . | fromYaml).files }}
      - secret:
          name: {{ .secret }}
          items:
            - key: {{ .key }}
              path: {{ .path }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpDir.sizeLimit }}
{{- end }}

{{- define "video-gateway.volumeMounts" -}}
- name: secrets
  mountPath: {{ .Values.secrets.mountPath }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "video-gateway.podCommon" -}}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Scheduling of one component's pods: (dict "root" $ "values" .Values.api) */}}
{{- define "video-gateway.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Checks the schema cannot express; each fails the render with a message. */}}
{{- define "video-gateway.validate" -}}
{{- if and (include "video-gateway.webhooksOn" .) (not .Values.secrets.webhookSecrets) }}
{{- fail "secrets.webhookSecrets is unset but webhooks are on: the API refuses to start without a whsec_ secret (set it, or env.VG_WEBHOOKS__ENABLED: \"false\")" }}
{{- end }}
{{- range $name, $profile := .Values.upstreams }}
{{- $settings := $profile.settings | default dict }}
{{- if and (not (include "video-gateway.false" (get $settings "sends_webhooks"))) (not $profile.webhookSecrets) }}
{{- fail (printf "upstreams.%s sends webhooks (settings.sends_webhooks is not false) but has no webhookSecrets" $name) }}
{{- end }}
{{- end }}
{{- range $component := list "api" "worker" }}
{{- $scaling := (get $.Values $component).autoscaling }}
{{- if and $scaling.enabled (gt (int $scaling.minReplicas) (int $scaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas is above maxReplicas" $component) }}
{{- end }}
{{- if and $scaling.enabled (not (or $scaling.targetCPUUtilizationPercentage $scaling.targetMemoryUtilizationPercentage)) }}
{{- fail (printf "%s.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $component) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The webhook receivers' paths: VG_WEBHOOKS__PATH (if webhooks are on) and /webhooks/<profile>. */}}
{{- define "video-gateway.webhookPaths" -}}
paths:
{{- if include "video-gateway.webhooksOn" . }}
  - {{ get .Values.env "VG_WEBHOOKS__PATH" | default "/webhooks/openai" | quote }}
{{- end }}
{{- range $name, $profile := .Values.upstreams }}
{{- if not (include "video-gateway.false" (get ($profile.settings | default dict) "sends_webhooks")) }}
  - {{ printf "/webhooks/%s" $name | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when a setting reads as false to pydantic (false, "false", "0", "off", "no"...), else "". */}}
{{- define "video-gateway.false" -}}
{{- if and (not (kindIs "invalid" .)) (has (lower (toString .)) (list "false" "0" "off" "no" "f" "n")) }}true{{ end }}
{{- end }}

{{/* "true" unless env.VG_WEBHOOKS__ENABLED switches the webhook receiver off. */}}
{{- define "video-gateway.webhooksOn" -}}
{{- if not (include "video-gateway.false" (get .Values.env "VG_WEBHOOKS__ENABLED")) }}true{{ end }}
{{- end }}
