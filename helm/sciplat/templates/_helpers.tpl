{{- /*
  Names. Every resource name comes from here, so parent charts and the jupyterhub values
  (which refer to sciplat-settings, sciplat-postgresql, sciplat-api) can rely on them.
*/}}
{{- define "sciplat.fullname" -}}
{{- .Values.fullnameOverride | default (printf "%s-sciplat" .Release.Name) | trunc 40 | trimSuffix "-" -}}
{{- end }}
{{- define "sciplat.name" -}}{{ .Values.nameOverride | default "sciplat" }}{{- end }}
{{- define "sciplat.settings.fullname" -}}{{ include "sciplat.fullname" . }}-settings{{- end }}
{{- define "sciplat.postgresql.fullname" -}}{{ include "sciplat.fullname" . }}-postgresql{{- end }}
{{- define "sciplat.data.fullname" -}}{{ include "sciplat.fullname" . }}-data{{- end }}

{{- /* z2jh's names (mirrors jupyterhub.fullname: "" -> hub, proxy-public, ...). */}}
{{- define "sciplat.z2jh.prefix" -}}
{{- $override := .Values.jupyterhub.fullnameOverride -}}
{{- if eq (typeOf $override) "string" -}}
{{- if $override }}{{ $override }}-{{ end -}}
{{- else -}}
{{- .Release.Name }}-jupyterhub-
{{- end -}}
{{- end }}
{{- define "sciplat.hub.fullname" -}}{{ include "sciplat.z2jh.prefix" . }}hub{{- end }}
{{- define "sciplat.proxyPublic.fullname" -}}{{ include "sciplat.z2jh.prefix" . }}proxy-public{{- end }}
{{- define "sciplat.hub.serviceAccount" -}}{{ include "sciplat.z2jh.prefix" . }}hub{{- end }}

{{- /* Labels. */}}
{{- define "sciplat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sciplat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "sciplat.labels" -}}
{{ include "sciplat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- /* The labels z2jh puts on lab pods (legacy match labels: component, app, release). */}}
{{- define "sciplat.labSelector" -}}
component: singleuser-server
app: {{ .Values.jupyterhub.nameOverride | default "jupyterhub" }}
release: {{ .Release.Name }}
{{- end }}

{{- /* The labels dask-gateway's Kubernetes backend puts on scheduler and worker pods. */}}
{{- define "sciplat.daskSelector" -}}
app.kubernetes.io/name: dask-gateway
gateway.dask.org/instance: {{ printf "%s-dask-gateway" .Release.Name }}
{{- end }}

{{- /* An image reference: (dict "root" $ "image" .Values.api.image). */}}
{{- define "sciplat.image" -}}
{{- $root := .root -}}
{{- $name := .image.name -}}
{{- if not (contains "/" $name) }}{{ $name = printf "%s/%s" $root.Values.image.registry $name }}{{ end -}}
{{ $name }}:{{ .image.tag | default $root.Values.image.tag }}
{{- end }}
{{- define "sciplat.pullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end }}

{{- /* The public URL: sciplat.hub.public_url, else from the first ingress host. */}}
{{- define "sciplat.publicUrl" -}}
{{- if .Values.sciplat.hub.public_url -}}
{{ .Values.sciplat.hub.public_url | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{ ternary "https" "http" .Values.ingress.tls.enabled }}://{{ first .Values.ingress.hosts }}
{{- else -}}
{{ fail "sciplat.hub.public_url: set it, or enable ingress with a host" }}
{{- end -}}
{{- end }}

{{- /* The database (in-cluster or external). */}}
{{- define "sciplat.db.host" -}}
{{- if .Values.postgresql.enabled -}}{{ include "sciplat.postgresql.fullname" . }}
{{- else -}}{{ required "externalDatabase.host: set it, or enable postgresql" .Values.externalDatabase.host }}{{- end -}}
{{- end }}
{{- define "sciplat.db" -}}
{{- if .Values.postgresql.enabled -}}
{{- toYaml (dict "port" 5432 "username" .Values.postgresql.username "databases" .Values.postgresql.databases "sslmode" "disable" "secret" (.Values.postgresql.existingSecret | default (include "sciplat.postgresql.fullname" .))) -}}
{{- else -}}
{{- $_ := required "externalDatabase.host: set it, or enable postgresql" .Values.externalDatabase.host -}}
{{- toYaml (dict "port" .Values.externalDatabase.port "username" .Values.externalDatabase.username "databases" .Values.externalDatabase.databases "sslmode" .Values.externalDatabase.sslmode "secret" (required "externalDatabase.existingSecret: name the Secret holding the password" .Values.externalDatabase.existingSecret)) -}}
{{- end -}}
{{- end }}

{{- /*
  The effective settings.json: .Values.sciplat with what the chart knows filled in
  (public URL, the proxy's in-cluster address, catalog and job-store database URLs).
  Passwords never go into it (PGPASSWORD instead).
*/}}
{{- define "sciplat.settings" -}}
{{- $s := deepCopy .Values.sciplat -}}
{{- $db := include "sciplat.db" . | fromYaml -}}
{{- $hub := deepCopy ($s.hub | default dict) -}}
{{- $_ := set $hub "public_url" (include "sciplat.publicUrl" .) -}}
{{- /* the proxy as pods reach it (the portal calls the API service through it) */ -}}
{{- $_ := set $hub "ip" (include "sciplat.proxyPublic.fullname" .) -}}
{{- $_ := set $hub "port" 80 -}}
{{- $_ := set $s "hub" $hub -}}
{{- $catalog := deepCopy ($s.catalog | default dict) -}}
{{- if and (eq ($catalog.backend | default "duckdb") "postgres") (not $catalog.url) -}}
{{- $_ := set $catalog "url" (printf "postgresql://%s@%s:%v/%s?sslmode=%s" $db.username (include "sciplat.db.host" .) $db.port $db.databases.catalog $db.sslmode) -}}
{{- end -}}
{{- $_ := set $s "catalog" $catalog -}}
{{- /* UWS jobs in PostgreSQL, shared by every API, alerts and workers replica */ -}}
{{- $jobs := deepCopy ($s.jobs | default dict) -}}
{{- if not $jobs.url -}}
{{- $_ := set $jobs "url" (printf "postgresql://%s@%s:%v/%s?sslmode=%s" $db.username (include "sciplat.db.host" .) $db.port $db.databases.jobs $db.sslmode) -}}
{{- end -}}
{{- $_ := set $s "jobs" $jobs -}}
{{- toJson $s -}}
{{- end }}

{{- /* Which of sciplat's components this release deploys (the hub registers only these). */}}
{{- define "sciplat.components" -}}
{{- $out := dict -}}
{{- range $name := list "api" "portal" "workers" "alerts" -}}
{{- $_ := set $out $name (index $.Values $name).enabled -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* Chart-time checks with the offending key named. */}}
{{- define "sciplat.checks" -}}
{{- if and .Values.portal.enabled (or (gt (int .Values.portal.replicas) 1) .Values.portal.autoscaling.enabled) -}}
{{- fail "portal.replicas: the portal keeps login sessions and Firefly channels in memory; run exactly one replica (and no autoscaling)" -}}
{{- end -}}
{{- range $i, $img := .Values.sciplat.images -}}
{{- if not $img.container_image -}}
{{- fail (printf "sciplat.images[%d].container_image: image %q has no container image; the Kubernetes backend needs one" $i $img.name) -}}
{{- end -}}
{{- end -}}
{{- $jh := .Values.jupyterhub -}}
{{- if and $jh.enabled (dig "prePuller" "hook" "enabled" false $jh) -}}
{{- $recommended := "" -}}
{{- range .Values.sciplat.images }}{{ if and (eq (.tag | default "release") "recommended") (not $recommended) }}{{ $recommended = .container_image }}{{ end }}{{ end -}}
{{- $img := dig "singleuser" "image" dict $jh -}}
{{- $pulled := printf "%s:%s" ($img.name | default "") (toString ($img.tag | default "")) -}}
{{- if and $recommended (ne $pulled $recommended) -}}
{{- fail (printf "jupyterhub.singleuser.image (%s) must be the recommended lab image (%s): z2jh's hook pre-puller pulls it before an upgrade completes" $pulled $recommended) -}}
{{- end -}}
{{- end -}}
{{- $node := .Values.labs.largestNode -}}
{{- if $node.cpu -}}
{{- $mem := include "sciplat.bytes" $node.memory | float64 -}}
{{- range $i, $size := (.Values.sciplat.sizes | default list) -}}
{{- $smem := include "sciplat.bytes" $size.memory | float64 -}}
{{- if or (gt (float64 $size.cpu) (float64 $node.cpu)) (and (gt $mem 0.0) (gt $smem $mem)) -}}
{{- fail (printf "sciplat.sizes[%d] (%s: %v CPU, %s) does not fit labs.largestNode (%v CPU, %v)" $i $size.name $size.cpu (toString $size.memory) $node.cpu (toString $node.memory)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- /* "16Gi" / "4G" / 1024 -> bytes (as sciplat.config.parse_bytes). */}}
{{- define "sciplat.bytes" -}}
{{- $v := toString . | trim | trimSuffix "B" | trimSuffix "b" -}}
{{- $units := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "K" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- $out := "" -}}
{{- range $suffix := list "Ki" "Mi" "Gi" "Ti" "K" "M" "G" "T" -}}
{{- if and (not $out) (hasSuffix $suffix (upper $v | replace "I" "i")) -}}
{{- $out = mulf (trimSuffix (lower $suffix) (lower $v) | float64) (get $units $suffix) -}}
{{- end -}}
{{- end -}}
{{- if $out }}{{ $out }}{{ else if $v }}{{ $v | float64 }}{{ else }}0{{ end -}}
{{- end }}

{{- /* Traits of sciplat.hub.backends.kubernetes.KubernetesBackend from `labs:`. */}}
{{- define "sciplat.labsBackend" -}}
{{- $l := .Values.labs -}}
{{- $t := dict
  "uid_offset" $l.uidOffset
  "uid_map" $l.uidMap
  "home_storage" $l.homeStorage
  "home_mount_path" $l.homeMountPath
  "home_capacity" $l.homeCapacity
  "storage_access_modes" $l.storageAccessModes
  "home_nfs" $l.homeNfs
  "group_volumes" $l.groupVolumes
  "extra_volumes" $l.extraVolumes
  "extra_volume_mounts" $l.extraVolumeMounts
  "node_selector" $l.nodeSelector
  "tolerations" $l.tolerations
  "cpu_guarantee_fraction" $l.cpuGuaranteeFraction
  "mem_guarantee_fraction" $l.memGuaranteeFraction
  "check_node_fit" $l.checkNodeFit
  "unschedulable_timeout" $l.unschedulableTimeout
  "image_pull_secrets" .Values.imagePullSecrets
-}}
{{- if $l.storageClass }}{{ $_ := set $t "storage_class" $l.storageClass }}{{ end -}}
{{- if or $l.largestNode.cpu $l.largestNode.memory }}{{ $_ := set $t "max_node_resources" $l.largestNode }}{{ end -}}
{{- toJson $t -}}
{{- end }}

{{- /* Data sets of the discovery document: .Values.datasets plus the object-store Butler repo. */}}
{{- define "sciplat.datasets" -}}
{{- $d := deepCopy .Values.datasets -}}
{{- if and .Values.objectStore.enabled .Values.objectStore.butlerRepo -}}
{{- $name := printf "dp-%s" (.Values.sciplat.dataset | default "small") -}}
{{- $_ := set $d $name (mergeOverwrite (dict "size" (.Values.sciplat.dataset | default "small") "butler_repo" .Values.objectStore.butlerRepo) (get $d $name | default dict)) -}}
{{- end -}}
{{- toJson $d -}}
{{- end }}
