{{/* Names and labels, as `helm create` scaffolds them. */}}
{{- define "llamajit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llamajit.fullname" -}}
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

{{- define "llamajit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llamajit.labels" -}}
helm.sh/chart: {{ include "llamajit.chart" . }}
{{ include "llamajit.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* component=server keeps the helm test pod out of the Service and the policies. */}}
{{- define "llamajit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llamajit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "llamajit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llamajit.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Label that lets a pod through a restricted NetworkPolicy. */}}
{{- define "llamajit.clientLabel" -}}
{{ include "llamajit.fullname" . }}-client
{{- end }}

{{- define "llamajit.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary .Values.gpu.imageTagSuffix "" .Values.gpu.enabled)) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* The API key Secret: an existing one, or the chart's. */}}
{{- define "llamajit.apiKeySecretName" -}}
{{- .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "llamajit.fullname" .)) }}
{{- end }}

{{- define "llamajit.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/* Model served from a file (-m) unless the server downloads it itself (-hf). */}}
{{- define "llamajit.serverDownloads" -}}
{{- if and (eq .Values.model.source "hf") (not .Values.model.hf.initContainer) }}true{{ end }}
{{- end }}

{{- define "llamajit.initDownload" -}}
{{- if and .Values.model.hf.repo .Values.model.hf.initContainer (has .Values.model.source (list "hf" "pvc")) }}true{{ end }}
{{- end }}

{{/* The GGUF file name: the downloaded one when model.hf is in use, else model.file. */}}
{{- define "llamajit.modelFile" -}}
{{- if or (eq .Values.model.source "hf") (include "llamajit.initDownload" .) }}{{ .Values.model.hf.file }}{{ else }}{{ .Values.model.file }}{{ end }}
{{- end }}

{{- define "llamajit.modelClaim" -}}
{{- if eq .Values.model.source "existingClaim" }}{{ .Values.model.existingClaim }}
{{- else if eq .Values.model.source "pvc" }}{{ include "llamajit.fullname" . }}-model
{{- end }}
{{- end }}

{{/* Where the model volume is mounted: one model's folder, or the router's --models-dir. */}}
{{- define "llamajit.modelDir" -}}
{{- if .Values.router.enabled }}{{ .Values.router.modelsDir }}{{ else }}{{ .Values.model.mountPath }}{{ end }}
{{- end }}

{{/* The router's --models-preset, a ConfigMap mounted as a file (only when router.preset is set). */}}
{{- define "llamajit.routerPreset" -}}
{{- if and .Values.router.enabled .Values.router.preset }}true{{ end }}
{{- end }}

{{- define "llamajit.routerPresetName" -}}
{{ include "llamajit.fullname" . }}-router-preset
{{- end }}

{{- define "llamajit.routerPresetPath" -}}
/etc/llamajit/router/preset.ini
{{- end }}

{{/* preStop sleep + drain + 10 s for the process to exit after its last request. */}}
{{- define "llamajit.terminationGracePeriodSeconds" -}}
{{- add .Values.server.drain.preStopSleepSeconds .Values.server.drain.timeoutSeconds 10 }}
{{- end }}

{{/* Values that cannot work together fail the render with a message. */}}
{{- define "llamajit.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled: choose one (KEDA creates its own HPA)" }}
{{- end }}
{{- if and (eq .Values.model.source "existingClaim") (not .Values.model.existingClaim) }}
{{- fail "model.source=existingClaim needs model.existingClaim" }}
{{- end }}
{{- if and (eq .Values.model.source "hf") (not (and .Values.model.hf.repo .Values.model.hf.file)) }}
{{- fail "model.source=hf needs model.hf.repo and model.hf.file" }}
{{- end }}
{{- if and .Values.model.hf.repo (not .Values.model.hf.file) }}
{{- fail "model.hf.repo needs model.hf.file (the GGUF file to download)" }}
{{- end }}
{{- if and (or .Values.autoscaling.enabled .Values.keda.enabled) (not .Values.metrics.enabled) }}
{{- fail "autoscaling needs metrics.enabled (the llamacpp: metrics it scales on)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if .Values.router.enabled }}
{{- include "llamajit.validateRouter" . }}
{{- end }}
{{- if .Values.inferencePool.enabled }}
{{- if .Values.apiKey.enabled }}
{{- fail "inferencePool.enabled needs apiKey.enabled=false: the endpoint picker scrapes each pod's /metrics and cannot send a key (authenticate clients at the Gateway instead)" }}
{{- end }}
{{- if not .Values.metrics.enabled }}
{{- fail "inferencePool.enabled needs metrics.enabled (the endpoint picker reads the llamajit: metrics on /metrics)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Router mode: a router's /metrics is one model's (/metrics?model=NAME), so nothing that scrapes
or scales on the pod's llamacpp:* metrics can work; and the flags that name the one model of a
single-model server (-m, -hf, --alias) make llama-server start without the router.
*/}}
{{- define "llamajit.validateRouter" -}}
{{- if .Values.inferencePool.enabled }}
{{- fail "inferencePool.enabled is not available in router mode (router.enabled): the endpoint picker reads /metrics, which a router serves per model only (/metrics?model=NAME)" }}
{{- end }}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are not available in router mode (router.enabled): they scale on the pod's llamacpp: metrics, which a router serves per model only (/metrics?model=NAME)" }}
{{- end }}
{{- if .Values.metrics.serviceMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled is not available in router mode (router.enabled): the router's /metrics needs ?model=NAME (one model's metrics), so a scrape of /metrics fails" }}
{{- end }}
{{- range $where, $annotations := dict "podAnnotations" .Values.podAnnotations "service.annotations" .Values.service.annotations }}
{{- if eq (toString (get ($annotations | default dict) "prometheus.io/scrape")) "true" }}
{{- fail (printf "%s: prometheus.io/scrape is not available in router mode (router.enabled): the router's /metrics needs ?model=NAME" $where) }}
{{- end }}
{{- end }}
{{- if .Values.server.alias }}
{{- fail "server.alias names a single-model server's model; in router mode (router.enabled) each model is named after its file or folder in router.modelsDir, or its router.preset section" }}
{{- end }}
{{- if include "llamajit.serverDownloads" . }}
{{- fail "model.source=hf with model.hf.initContainer=false starts the server with -hf, i.e. not as a router: in router mode (router.enabled) use the init container or model.source=pvc" }}
{{- end }}
{{- end }}

{{/* llama-server's command line, built from values. */}}
{{- define "llamajit.args" -}}
- --host
- 0.0.0.0
- --port
- {{ .Values.server.port | quote }}
{{- if .Values.router.enabled }}
{{- /* No model: llama-server's router, one child server per model on demand; it hands the flags below to each. */}}
- --models-dir
- {{ .Values.router.modelsDir | quote }}
- --models-max
- {{ .Values.router.modelsMax | quote }}
{{- if not .Values.router.autoload }}
- --no-models-autoload
{{- end }}
{{- if include "llamajit.routerPreset" . }}
- --models-preset
- {{ include "llamajit.routerPresetPath" . | quote }}
{{- end }}
{{- else if include "llamajit.serverDownloads" . }}
- --hf-repo
- {{ .Values.model.hf.repo | quote }}
- --hf-file
- {{ .Values.model.hf.file | quote }}
{{- else }}
- --model
- {{ printf "%s/%s" .Values.model.mountPath (include "llamajit.modelFile" .) | quote }}
{{- end }}
{{- with .Values.server.alias }}
- --alias
- {{ . | quote }}
{{- end }}
- --ctx-size
- {{ .Values.server.ctxSize | quote }}
- --parallel
- {{ .Values.server.parallel | quote }}
{{- if .Values.server.maxQueue }}
- --max-queue
- {{ .Values.server.maxQueue | quote }}
{{- end }}
{{- if .Values.server.threads }}
- --threads
- {{ .Values.server.threads | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- --metrics
{{- end }}
{{- if .Values.server.embeddings }}
- --embeddings
{{- end }}
{{- if not .Values.server.slots }}
- --no-slots
{{- end }}
- --drain-timeout
- {{ .Values.server.drain.timeoutSeconds | quote }}
{{- if .Values.gpu.enabled }}
- --n-gpu-layers
- {{ .Values.gpu.nGpuLayers | quote }}
{{- end }}
{{- range .Values.server.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
