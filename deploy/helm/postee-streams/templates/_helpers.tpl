{{/* Names and labels. */}}
{{- define "postee-streams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postee-streams.fullname" -}}
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

{{- define "postee-streams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postee-streams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "postee-streams.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "postee-streams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "postee-streams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "postee-streams.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The kubernetes action's rules: deploy/kubernetes/rbac.yaml. */}}
{{- define "postee-streams.rbacRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, patch{{ if .Values.rbac.deletePods }}, delete{{ end }}]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  verbs: [get, list, patch]
{{- if .Values.rbac.scaleToZero }}
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  verbs: [patch]
{{- end }}
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, patch]
{{- end }}
