{{- define "video-gateway.env" -}}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
- name: VG_DB__URL_FILE
  value: /run/secrets/video-gateway/db-url
- name: VG_UPSTREAM__API_KEY_FILE
  value: /run/secrets/video-gateway/upstream-api-key
- name: VG_WEBHOOKS__SECRETS_FILE
  value: /run/secrets/video-gateway/webhook-secrets
- name: VG_S3__ACCESS_KEY_ID_FILE
  value: /run/secrets/video-gateway/s3-access-key-id
- name: VG_S3__SECRET_ACCESS_KEY_FILE
  value: /run/secrets/video-gateway/s3-secret-access-key
{{- end -}}
