{{/* Names and labels shared by every object of the chart. */}}
{{- define "datalabs.labels" -}}
app.kubernetes.io/name: datalabs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "datalabs.selector" -}}
app.kubernetes.io/name: datalabs
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* A container that meets Pod Security "restricted". */}}
{{- define "datalabs.restrictedContainer" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A secret value kept across upgrades: the existing Secret's, else a new random one. */}}
{{- define "datalabs.keep" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace "datalabs-hub" -}}
{{- if and $existing (index $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- .new -}}
{{- end -}}
{{- end -}}

{{/* The catalogue ConfigMap's items, as JSON: ConfigMap keys cannot hold "/", so each file
     `<mission>/volumes/<file>.yaml` is stored under the key with "/" as "__" and put back at
     its path. One list for the hub's mount and the sessions' (hub-config.yaml). */}}
{{- define "datalabs.catalogueItems" -}}
{{- $items := list -}}
{{- range $path, $text := .Values.catalogue.files -}}
{{- $items = append $items (dict "key" ($path | replace "/" "__") "path" $path) -}}
{{- end -}}
{{- toJson $items -}}
{{- end -}}
