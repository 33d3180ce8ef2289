{{/* The release's name prefix for every object. */}}
{{- define "pdp.fullname" -}}
{{- if contains "pdp" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pdp" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pdp.labels" -}}
app.kubernetes.io/name: pdp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
pdp.hlj.gov.cn/instance-mode: {{ .Values.instance.mode }}
{{- end -}}

{{/* Labels of a pod beside its selector labels. */}}
{{- define "pdp.podLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
pdp.hlj.gov.cn/instance-mode: {{ .Values.instance.mode }}
{{- end -}}

{{/* Selector labels of one component (gateway, planning, migrate). */}}
{{- define "pdp.selector" -}}
app.kubernetes.io/name: pdp
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pdp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The TOML configuration every pod reads (PDP_CONFIG). */}}
{{- define "pdp.config" -}}
mode = "cluster"
data_dir = "/tmp/pdp"

[http]
listen = "0.0.0.0:8080"
# The gateway's /metrics, apart from its public listener.
metrics_listen = "0.0.0.0:9464"
shutdown_grace_secs = 25

[grpc]
listen = "0.0.0.0:{{ .Values.instance.grpcPort }}"

[instance]
name = {{ .Release.Name | quote }}
mode = {{ .Values.instance.mode | quote }}
tenants = [{{ range $i, $t := .Values.instance.tenants }}{{ if $i }}, {{ end }}{{ $t | quote }}{{ end }}]

{{- if .Values.config.holidays }}

[calendar]
holidays_file = "/etc/pdp/config/holidays.toml"
{{- end }}

[store]
pool_size = {{ .Values.config.storePoolSize }}

[events]
brokers = {{ .Values.config.kafkaBrokers | quote }}
partitions = {{ .Values.config.kafkaPartitions }}
replication_factor = {{ .Values.config.kafkaReplicationFactor }}
fetch_wait_ms = {{ .Values.config.kafkaFetchWaitMs | default 500 }}

[telemetry]
log_format = "json"
log_level = {{ .Values.config.logLevel | quote }}
service_name = "pdp"
domain_window_days = {{ .Values.config.domainWindowDays | default 30 }}
{{- with .Values.config.otlpEndpoint }}
otlp_endpoint = {{ . | quote }}
{{- end }}

{{- with .Values.sandbox }}

[sandbox]
{{- with .bucket }}
store_url = {{ . | quote }}
{{- end }}
{{- with .endpoint }}
s3_endpoint = {{ . | quote }}
{{- end }}
s3_region = {{ .region | quote }}
query_memory_mib = {{ .queryMemoryMiB }}
query_timeout_secs = {{ .queryTimeoutSecs }}
workspace_quota_mib = {{ .workspaceQuotaMiB }}
{{- if .ballista.enabled }}
ballista_scheduler = "df://{{ include "pdp.fullname" $ }}-sandbox-scheduler:{{ .ballista.schedulerPort }}"
{{- end }}
{{- end }}
{{- range .Values.products.exchanges }}

[[products.exchanges]]
id = {{ .id | quote }}
name = {{ .name | quote }}
receipts_topic = {{ .receiptsTopic | quote }}
trades_topic = {{ .tradesTopic | quote }}
public_key = {{ .publicKey | default "" | quote }}
{{- end }}

[audit]
retention_days = {{ .Values.audit.retentionDays }}
checkpoint_every_secs = {{ .Values.audit.checkpointEverySecs }}
{{- with .Values.audit.tenantRetentionDays }}

[audit.tenant_retention_days]
{{- range $tenant, $days := . }}
{{ $tenant | quote }} = {{ $days }}
{{- end }}
{{- end }}

[oversight]
expiring_within_days = {{ .Values.oversight.expiringWithinDays }}
pass_mark = {{ .Values.oversight.passMark }}
{{- with .Values.oversight.supervisorDepartments }}

[oversight.supervisor_departments]
{{- range $org, $departments := . }}
{{ $org | quote }} = [{{ range $i, $d := $departments }}{{ if $i }}, {{ end }}{{ $d | quote }}{{ end }}]
{{- end }}
{{- end }}
{{- with .Values.oversight.rulesToml }}

{{ . }}
{{- end }}

[gateway]
audience = {{ .Values.gateway.audience | quote }}
issuer = {{ .Values.gateway.issuer | quote }}
{{- with .Values.gateway.jwksUrl }}
jwks_url = {{ . | quote }}
{{- end }}
{{- if .Values.gateway.jwksSecret.name }}
jwks_file = "/etc/pdp/jwks/{{ .Values.gateway.jwksSecret.key }}"
{{- end }}
cors_origins = [{{ range $i, $o := .Values.gateway.corsOrigins }}{{ if $i }}, {{ end }}{{ $o | quote }}{{ end }}]
trusted_proxies = [{{ range $i, $p := .Values.gateway.trustedProxies }}{{ if $i }}, {{ end }}{{ $p | quote }}{{ end }}]
watch_routes = {{ .Values.gateway.watchTenantRoutes }}
routes_namespace = {{ .Release.Namespace | quote }}

[gateway.upstreams]
{{- $root := . }}
{{- range $name, $svc := .Values.instance.services }}
{{- if $svc.enabled }}
{{ $name }} = "http://{{ include "pdp.fullname" $root }}-{{ $name }}:{{ $root.Values.instance.grpcPort }}"
{{- end }}
{{- end }}
{{- end -}}

{{/* Secrets as environment variables, by reference only. */}}
{{- define "pdp.secretEnv" -}}
- name: PDP_CONFIG
  value: /etc/pdp/config/pdp.toml
- name: PDP_STORE__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.database.name }}
      key: {{ .Values.secrets.database.key }}
- name: PDP_IDENTITY__HMAC_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.identity.name }}
      key: {{ .Values.secrets.identity.key }}
{{- if .Values.secrets.redis.name }}
- name: PDP_REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.redis.name }}
      key: {{ .Values.secrets.redis.key }}
{{- end }}
{{- include "pdp.sandboxStoreEnv" . }}
{{- end -}}

{{/* The sandbox bucket's key pair, by reference: all the Ballista cluster's pods hold. */}}
{{- define "pdp.sandboxStoreEnv" -}}
{{- with .Values.secrets.sandboxStore }}
{{- if .name }}
- name: PDP_SANDBOX__S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .accessKeyIdKey }}
- name: PDP_SANDBOX__S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "pdp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pdp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pdp.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
{{- end -}}

{{/* Volumes every pdp container mounts: the config and a writable /tmp. */}}
{{- define "pdp.volumes" -}}
- name: config
  configMap:
    name: {{ include "pdp.fullname" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "pdp.volumeMounts" -}}
- name: config
  mountPath: /etc/pdp/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* An egress rule: a port (TCP) and its peers, if any. */}}
{{- define "pdp.egressRule" -}}
- ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
