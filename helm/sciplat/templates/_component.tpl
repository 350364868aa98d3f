{{- /*
  The shape every sciplat service component shares (api, portal, workers, alerts), one named
  template per kind; templates/<component>/<kind>.yaml call them with
  (dict "root" $ "name" "api").
*/}}

{{- define "sciplat.component.env" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
{{- $db := include "sciplat.db" $root | fromYaml -}}
- name: SCIPLAT_SETTINGS
  value: /etc/sciplat/settings.json
- name: HOME
  value: /tmp
- name: SCIPLAT_DATA_DIR
  value: {{ $root.Values.sciplat.data_dir | quote }}
- name: JUPYTERHUB_API_URL
  value: {{ printf "http://%s:8081/hub/api" (include "sciplat.hub.fullname" $root) | quote }}
- name: JUPYTERHUB_SERVICE_NAME
  value: {{ $v.hubService | quote }}
- name: JUPYTERHUB_SERVICE_PREFIX
  value: {{ $v.servicePrefix | quote }}
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "sciplat.hub.fullname" $root }}
      key: {{ printf "hub.services.%s.apiToken" $v.hubService }}
- name: PGHOST
  value: {{ include "sciplat.db.host" $root | quote }}
- name: PGPORT
  value: {{ $db.port | quote }}
- name: PGUSER
  value: {{ $db.username | quote }}
- name: PGSSLMODE
  value: {{ $db.sslmode | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $db.secret }}
      key: password
{{- with $root.Values.objectStore }}
{{- if .enabled }}
{{- if .endpoint }}
- name: S3_ENDPOINT_URL
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .region }}
- name: AWS_DEFAULT_REGION
  value: {{ .region | quote }}
{{- end }}
- name: SCIPLAT_BUTLER_REPO
  value: {{ .butlerRepo | quote }}
- name: SCIPLAT_RESULTS_URL
  value: {{ printf "s3://%s" .resultsBucket | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ required "objectStore.existingSecret: name the Secret with the S3 keys" .existingSecret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sciplat.component.deployment" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "sciplat.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .name }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  template:
    metadata:
      labels:
        {{- include "sciplat.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
        # z2jh's hub NetworkPolicy admits pods with this label (token checks).
        hub.jupyter.org/network-access-hub: "true"
      annotations:
        checksum/settings: {{ include "sciplat.settings" $root | sha256sum }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "sciplat.image" (dict "root" $root "image" $v.image) }}
          imagePullPolicy: {{ include "sciplat.pullPolicy" (dict "root" $root "image" $v.image) }}
          command:
            {{- toYaml $v.command | nindent 12 }}
          env:
            {{- include "sciplat.component.env" . | nindent 12 }}
          {{- if $v.port }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
          {{- end }}
          {{- if and $v.port $v.healthPath }}
          readinessProbe:
            httpGet: {path: {{ $v.healthPath | quote }}, port: http}
            periodSeconds: 10
          livenessProbe:
            httpGet: {path: {{ $v.healthPath | quote }}, port: http}
            initialDelaySeconds: 30
            periodSeconds: 20
            failureThreshold: 6
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: settings
              mountPath: /etc/sciplat
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.dataVolume.enabled }}
            - name: data
              mountPath: {{ $root.Values.sciplat.data_dir }}
            {{- end }}
            {{- if and (ne .name "portal") $root.Values.objectStore.enabled $root.Values.objectStore.butlerRepo }}
            {{- /* the object-store Butler, where the services look for the data preview's repo */}}
            - name: butler
              mountPath: {{ printf "%s/dataset/butler/butler.yaml" $root.Values.sciplat.data_dir }}
              subPath: butler.yaml
              readOnly: true
            {{- end }}
            {{- if eq .name "portal" }}
            {{- /* the key the hub signs labs' Firefly channels with (channel_secret());
                 after the data volume, which it sits in */}}
            - name: settings
              mountPath: {{ printf "%s/run/portal-channel-secret" $root.Values.sciplat.data_dir }}
              subPath: portal-channel-secret
              readOnly: true
            {{- end }}
      volumes:
        - name: settings
          secret:
            secretName: {{ include "sciplat.settings.fullname" $root }}
            defaultMode: 0440
        - name: tmp
          emptyDir: {}
        {{- if and (ne .name "portal") $root.Values.objectStore.enabled $root.Values.objectStore.butlerRepo }}
        - name: butler
          configMap:
            name: {{ include "sciplat.fullname" $root }}-butler
        {{- end }}
        {{- if $root.Values.dataVolume.enabled }}
        - name: data
          persistentVolumeClaim:
            claimName: {{ $root.Values.dataVolume.existingClaim | default (include "sciplat.data.fullname" $root) }}
        {{- end }}
{{- end }}

{{- define "sciplat.component.service" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  type: ClusterIP
  selector:
    {{- include "sciplat.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
  ports:
    - name: http
      port: {{ $v.port }}
      targetPort: http
{{- end }}

{{- define "sciplat.component.pdb" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  minAvailable: {{ $v.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "sciplat.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "sciplat.component.hpa" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}

{{- /*
  Who may connect to a service component: the hub's proxy (it routes /services/...) and labs
  (direct in-cluster calls); nobody else.
*/}}
{{- define "sciplat.component.netpol" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  podSelector:
    matchLabels:
      {{- include "sciplat.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .name }}
  policyTypes: [Ingress]
  ingress:
    {{- if $v.port }}
    - ports:
        - port: http
      from:
        - podSelector:
            matchLabels:
              component: proxy
              app: {{ $root.Values.jupyterhub.nameOverride | default "jupyterhub" }}
              release: {{ $root.Release.Name }}
        - podSelector:
            matchLabels:
              {{- include "sciplat.labSelector" $root | nindent 14 }}
        - podSelector:
            matchLabels:
              {{- include "sciplat.selectorLabels" $root | nindent 14 }}
        {{- /* dask schedulers and workers run the user's code, as labs do */}}
        - podSelector:
            matchLabels:
              {{- include "sciplat.daskSelector" $root | nindent 14 }}
        {{- if $v.ingressPaths }}
        {{- /* the Ingress sends ingressPaths here directly */}}
        {{- toYaml $root.Values.networkPolicy.ingressControllerPeers | nindent 8 }}
        {{- end }}
    {{- end }}
{{- end }}

{{- /*
  A component with ingressPaths gets its own Ingress on the public hosts: the controller picks
  the longest matching prefix, so these paths reach the component and the rest the hub's proxy.
*/}}
{{- define "sciplat.component.ingress" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
{{- $name := .name -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "sciplat.fullname" $root }}-{{ .name }}
  labels:
    {{- include "sciplat.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
  {{- with (merge (deepCopy $v.ingressAnnotations) $root.Values.ingress.annotations) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if $root.Values.ingress.tls.enabled }}
  tls:
    - hosts:
        {{- toYaml $root.Values.ingress.hosts | nindent 8 }}
      secretName: {{ $root.Values.ingress.tls.secretName }}
  {{- end }}
  rules:
    {{- range $root.Values.ingress.hosts }}
    - host: {{ . | quote }}
      http:
        paths:
          {{- range $v.ingressPaths }}
          - path: {{ . }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "sciplat.fullname" $root }}-{{ $name }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
