{{/* The release's name, with the chart's appended unless it already holds it. */}}
{{- define "shop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}
{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- end -}}

{{- define "shop.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shop.labels" -}}
{{ include "shop.selector" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
A hook Job. Arguments: root (the chart's context), name, events, weight, deletePolicy (empty:
Helm's default), unschedulable (a Pod no Node takes, failing at a one-second deadline).
*/}}
{{- define "shop.hookJob" -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "shop.fullname" .root }}-{{ .name }}
  labels:
    {{- include "shop.labels" .root | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .events }}
    helm.sh/hook-weight: {{ .weight | quote }}
    {{- with .deletePolicy }}
    helm.sh/hook-delete-policy: {{ . }}
    {{- end }}
spec:
  {{- if .unschedulable }}
  activeDeadlineSeconds: 1
  {{- else }}
  suspend: {{ .root.Values.hooks.suspend }}
  {{- end }}
  backoffLimit: 0
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .root.Release.Name }}
        app.kubernetes.io/component: {{ .name }}
    spec:
      restartPolicy: Never
      {{- if .unschedulable }}
      nodeSelector:
        shop.example.com/no-such-node: "true"
      {{- end }}
      containers:
        - name: {{ .name }}
          image: "{{ .root.Values.image.repository }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}"
          args: [{{ .name | quote }}]
{{- end -}}
