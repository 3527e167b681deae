{{/*
Names, labels and image references shared by every template.
*/}}

{{- define "kubescientist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: <release>-kubescientist, or the release name alone when it already says so. */}}
{{- define "kubescientist.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubescientist.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of the chart's own objects. Deliberately not app.kubernetes.io/managed-by=kubescientist: that label
marks what the operator creates (its watches select on it); Helm's objects say managed-by=Helm.
*/}}
{{- define "kubescientist.labels" -}}
helm.sh/chart: {{ include "kubescientist.chart" . }}
{{ include "kubescientist.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubescientist
{{- end -}}

{{- define "kubescientist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubescientist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubescientist.operatorSelectorLabels" -}}
{{ include "kubescientist.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubescientist.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "kubescientist.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubescientist.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kubescientist.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
An image reference from {repository, tag, digest}: the digest wins (immutable), else the tag, else the
chart's appVersion. "latest" is refused by values.schema.json.
*/}}
{{- define "kubescientist.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces whose node pods get the NetworkPolicy: networkPolicy.namespaces, else the watched ones. */}}
{{- define "kubescientist.networkPolicyNamespaces" -}}
{{- if .Values.networkPolicy.namespaces -}}
{{- toJson .Values.networkPolicy.namespaces -}}
{{- else -}}
{{- toJson .Values.operator.watchNamespaces -}}
{{- end -}}
{{- end -}}
