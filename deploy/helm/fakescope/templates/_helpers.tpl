{{/* Names, labels and the checks every template relies on. */}}

{{- define "fakescope.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-fakescope, or the release name alone when it already says fakescope. */}}
{{- define "fakescope.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Component names: 50 characters of fullname leave room for the suffixes below. */}}
{{- define "fakescope.triton.fullname" -}}{{ include "fakescope.fullname" . }}-triton{{- end -}}
{{- define "fakescope.web.fullname" -}}{{ include "fakescope.fullname" . }}-web{{- end -}}
{{- define "fakescope.worker.fullname" -}}{{ include "fakescope.fullname" . }}-worker{{- end -}}

{{- define "fakescope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fakescope.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fakescope.labels" -}}
{{ include "fakescope.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Triton's --model-repository argument; fails with the value to set when it is missing. */}}
{{- define "fakescope.triton.modelRepository" -}}
{{- $repo := .Values.triton.modelRepository -}}
{{- if eq $repo.source "s3" -}}
{{- if not (hasPrefix "s3://" $repo.s3.url) -}}
{{- fail "triton.modelRepository.s3.url must be s3://bucket/path or s3://host:port/bucket/path" -}}
{{- end -}}
{{- if not $repo.s3.credentialsSecret -}}
{{- fail "triton.modelRepository.s3.credentialsSecret: name the Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" -}}
{{- end -}}
{{- $repo.s3.url -}}
{{- else if eq $repo.source "pvc" -}}
{{- if not $repo.pvc.claimName -}}
{{- fail "triton.modelRepository.pvc.claimName: name the PersistentVolumeClaim holding model_repository/" -}}
{{- end -}}
/models
{{- else -}}
{{- fail (printf "triton.modelRepository.source must be s3 or pvc, got %q" $repo.source) -}}
{{- end -}}
{{- end -}}

{{/* Triton's gRPC address for the web service and its workers. */}}
{{- define "fakescope.tritonUrl" -}}
{{- default (printf "%s:%v" (include "fakescope.triton.fullname" .) .Values.triton.ports.grpc) .Values.web.tritonUrl -}}
{{- end -}}

{{/* True when uploads must be visible to more than one pod. */}}
{{- define "fakescope.uploadsShared" -}}
{{- if or .Values.worker.enabled (gt (int .Values.web.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/*
Environment of the web front end and of the workers: the same FAKESCOPE_WEB_* settings, so a
job is analysed the same way whichever process claims it.
*/}}
{{- define "fakescope.web.env" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret: PostgreSQL is external; name the Secret with its url (and keda-connection for KEDA)" -}}
{{- end -}}
{{- if and (include "fakescope.uploadsShared" .) (not .Values.sharedData.existingClaim) (not .Values.sharedData.objectStorage) -}}
{{- fail "sharedData.existingClaim: uploads must be shared by the front end and the workers (a ReadWriteMany claim), or set sharedData.objectStorage with the upload storage variables in web.env" -}}
{{- end -}}
- name: FAKESCOPE_WEB_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
- name: FAKESCOPE_WEB_DATA_DIR
  value: {{ include "fakescope.web.dataDir" . }}
- name: FAKESCOPE_WEB_TRITON_URL
  value: {{ include "fakescope.tritonUrl" . | quote }}
- name: FAKESCOPE_WEB_TRITON_PROTOCOL
  value: grpc
{{- with .Values.web.publicUrl }}
- name: FAKESCOPE_WEB_PUBLIC_URL
  value: {{ . | quote }}
- name: FAKESCOPE_WEB_SECURE_COOKIES
  value: {{ hasPrefix "https://" . | quote }}
{{- end }}
{{- with .Values.web.adminTokenSecret }}
- name: FAKESCOPE_WEB_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: admin-token
{{- end }}
{{- range $name, $value := .Values.web.env }}
{{- if not (hasPrefix "FAKESCOPE_WEB_" $name) }}
{{- fail (printf "web.env: %s is not a FAKESCOPE_WEB_* setting" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Where the web and worker pods keep uploads: the volume's mount and FAKESCOPE_WEB_DATA_DIR. */}}
{{- define "fakescope.web.dataDir" -}}
/var/lib/fakescope/web
{{- end -}}

{{/* The uploads volume of the web and worker pods. */}}
{{- define "fakescope.web.dataVolume" -}}
- name: data
{{- if .Values.sharedData.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.sharedData.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* Container hardening shared by every pod: no privilege escalation, no capabilities. */}}
{{- define "fakescope.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
