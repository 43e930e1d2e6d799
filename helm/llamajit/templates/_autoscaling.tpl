{{/*
What the HPA (through prometheus-adapter) and KEDA scale on: autoscaling.metrics, one or more of
  inflight  slots busy + requests deferred, per pod (llamacpp:requests_processing + requests_deferred)
  queue     requests waiting for a slot, per pod (llamajit:num_requests_waiting)
  ttft      the p90 of time to first token over autoscaling.ttftWindow (llamajit:time_to_first_token_seconds)
With several, the HPA takes the largest replica count any of them asks for.
*/}}

{{/* The name prometheus-adapter serves a metric under (custom.metrics.k8s.io). */}}
{{- define "llamajit.scaleMetricName" -}}
{{- $names := dict "inflight" .root.Values.autoscaling.metricName "queue" "llamajit_num_requests_waiting" "ttft" "llamajit_time_to_first_token_p90_seconds" -}}
{{- get $names .metric -}}
{{- end }}

{{/* The per-pod target of a metric, as a quantity string. */}}
{{- define "llamajit.scaleTarget" -}}
{{- $a := .root.Values.autoscaling -}}
{{- $targets := dict "inflight" $a.targetInflightPerPod "queue" $a.targetQueuePerPod "ttft" $a.targetTTFTSeconds -}}
{{- get $targets .metric | toString -}}
{{- end }}

{{/*
prometheus-adapter rules serving each metric per pod. The TTFT rule keeps only real quantiles
(`>= 0` drops the NaN of a pod that started no request in the window) and gives such a pod 0,
so that an idle fleet scales down instead of leaving the HPA without a value.
*/}}
{{- define "llamajit.adapterRules" -}}
rules:
{{- range .Values.autoscaling.metrics }}
{{- $name := include "llamajit.scaleMetricName" (dict "root" $ "metric" .) }}
{{- if eq . "inflight" }}
  - seriesQuery: 'llamacpp:requests_processing{namespace!="",pod!=""}'
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
    name:
      matches: "^llamacpp:requests_processing$"
      as: {{ $name | quote }}
    metricsQuery: >-
      sum by (<<.GroupBy>>) (llamacpp:requests_processing{<<.LabelMatchers>>})
      + sum by (<<.GroupBy>>) (llamacpp:requests_deferred{<<.LabelMatchers>>})
{{- else if eq . "queue" }}
  - seriesQuery: 'llamajit:num_requests_waiting{namespace!="",pod!=""}'
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
    name:
      matches: "^llamajit:num_requests_waiting$"
      as: {{ $name | quote }}
    metricsQuery: sum by (<<.GroupBy>>) (llamajit:num_requests_waiting{<<.LabelMatchers>>})
{{- else if eq . "ttft" }}
  - seriesQuery: 'llamajit:time_to_first_token_seconds_bucket{namespace!="",pod!=""}'
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
    name:
      matches: "^llamajit:time_to_first_token_seconds_bucket$"
      as: {{ $name | quote }}
    metricsQuery: >-
      (histogram_quantile(0.9, sum by (<<.GroupBy>>, le)
      (rate(llamajit:time_to_first_token_seconds_bucket{<<.LabelMatchers>>}[{{ $.Values.autoscaling.ttftWindow }}]))) >= 0)
      or (0 * sum by (<<.GroupBy>>) (llamajit:num_requests_running{<<.LabelMatchers>>}))
{{- end }}
{{- end }}
{{- end }}

{{/*
KEDA's query for a metric, over the release's pods (scraped through its Service): the total for
inflight and queue (metricType AverageValue: KEDA's HPA divides it by the replica count), the
fleet's p90 for ttft (metricType Value: compared as it is).
*/}}
{{- define "llamajit.kedaQuery" -}}
{{- $sel := printf "namespace=%q,service=%q" .root.Release.Namespace (include "llamajit.fullname" .root) -}}
{{- if eq .metric "inflight" -}}
sum(llamacpp:requests_processing{ {{- $sel -}} }) + sum(llamacpp:requests_deferred{ {{- $sel -}} })
{{- else if eq .metric "queue" -}}
sum(llamajit:num_requests_waiting{ {{- $sel -}} })
{{- else if eq .metric "ttft" -}}
histogram_quantile(0.9, sum by (le) (rate(llamajit:time_to_first_token_seconds_bucket{ {{- $sel -}} }[{{ .root.Values.autoscaling.ttftWindow }}]))) >= 0 or vector(0)
{{- end }}
{{- end }}
