{{/*
The Gateway API Inference Extension's pieces (inferencePool.*): names, labels and the endpoint
picker's configuration. Facts about the picker (flags, ports, plugin types, the
core-metrics-extractor's engineConfigs) are those of its release named by
inferencePool.endpointPicker.image.tag.
*/}}

{{- define "llamajit.eppName" -}}
{{ include "llamajit.fullname" . | trunc 59 | trimSuffix "-" }}-epp
{{- end }}

{{- define "llamajit.eppSelectorLabels" -}}
app.kubernetes.io/name: {{ include "llamajit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: endpoint-picker
{{- end }}

{{- define "llamajit.eppLabels" -}}
helm.sh/chart: {{ include "llamajit.chart" . }}
{{ include "llamajit.eppSelectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The picker's ports: ext-proc (the Gateway's calls), gRPC health, its own Prometheus metrics. */}}
{{- define "llamajit.eppPorts" -}}
{{- dict "extProc" 9002 "health" 9003 "metrics" 9090 | toJson }}
{{- end }}

{{/*
The engine name the picker's core-metrics-extractor maps to our metric names, read from each
pod's label inference.networking.k8s.io/engine-type (so a pool mixing engines reads each pod's
own names).
*/}}
{{- define "llamajit.engineType" -}}
llamajit
{{- end }}

{{/* Not empty when server.extraArgs load LoRA adapters, i.e. the server exports llamajit:lora_requests_info. */}}
{{- define "llamajit.loraLoaded" -}}
{{- range .Values.server.extraArgs }}
{{- if or (has (toString .) (list "--lora" "--lora-scaled")) (hasPrefix "--lora=" (toString .)) (hasPrefix "--lora-scaled=" (toString .)) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The EndpointPickerConfig: the default scorers (queue depth, KV-cache use, prefix cache), the
metrics data source (/metrics over plain HTTP on the pool's target port), and the extractor
told where our numbers are. cacheInfoSpec is empty: the server has no paged KV blocks to report.
loraSpec is empty without adapters: a spec naming a metric the pods never export makes every
scrape report an error.
*/}}
{{- define "llamajit.eppConfig" -}}
{{- $w := .Values.inferencePool.endpointPicker.weights -}}
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - type: kv-cache-utilization-scorer
  - type: prefix-cache-scorer
  - type: metrics-data-source
    parameters:
      scheme: http
      path: /metrics
  - type: core-metrics-extractor
    parameters:
      defaultEngine: {{ include "llamajit.engineType" . }}
      engineConfigs:
        - name: {{ include "llamajit.engineType" . }}
          queuedRequestsSpec: "llamajit:num_requests_waiting"
          runningRequestsSpec: "llamajit:num_requests_running"
          kvUsageSpec: "llamajit:kv_cache_usage_perc"
          loraSpec: {{ ternary "llamajit:lora_requests_info" "" (ne (include "llamajit.loraLoaded" .) "") | quote }}
          cacheInfoSpec: ""
dataLayer:
  sources:
    - pluginRef: metrics-data-source
      extractors:
        - pluginRef: core-metrics-extractor
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: queue-scorer
        weight: {{ $w.queue }}
      - pluginRef: kv-cache-utilization-scorer
        weight: {{ $w.kvCache }}
      - pluginRef: prefix-cache-scorer
        weight: {{ $w.prefixCache }}
{{- end }}
