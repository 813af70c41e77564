{{/* The labels every object carries and every selector matches (as `quotalang manifests`). */}}
{{- define "quotalang.labels" -}}
app.kubernetes.io/name: quotalang
app.kubernetes.io/component: webhook
{{- end }}

{{- define "quotalang.meta" -}}
name: {{ .name }}
{{- if .namespace }}
namespace: {{ .namespace }}
{{- end }}
labels:
  {{- include "quotalang.labels" . | nindent 2 }}
{{- end }}

{{/* "true" when Kubernetes guards kubernetes.io/metadata.name (>= 1.21): exempt by name, else by label. */}}
{{- define "quotalang.byName" -}}
{{- if semverCompare ">=1.21-0" (printf "%s.0" (toString .Values.kubeVersion)) }}true{{ end }}
{{- end }}

{{/* kube-system, the release namespace and webhook.exemptNamespaces, each once, sorted (JSON list). */}}
{{- define "quotalang.exempt" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.exemptNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The TLS Secret serve reads (tls.mode existing: yours). */}}
{{- define "quotalang.tlsSecret" -}}
{{- if eq .Values.tls.mode "existing" }}{{ required "tls.secretName: the kubernetes.io/tls Secret to mount" .Values.tls.secretName }}{{ else }}quotalang-tls{{ end }}
{{- end }}

{{- define "quotalang.clientConfig" -}}
service:
  namespace: {{ .Release.Namespace }}
  name: quotalang
  path: {{ .path }}
  port: 443
{{- if eq .Values.tls.mode "existing" }}
caBundle: {{ required "tls.caBundle: the PEM CA that signed tls.secretName" .Values.tls.caBundle | b64enc }}
{{- end }}
{{- end }}
