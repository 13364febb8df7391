{{- define "co.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "co.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "co.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "co.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The model proxy's upstream: the ChatGPT backend with a ChatGPT sign-in, else
modelProxy.upstream. */}}
{{- define "co.modelProxyUpstream" -}}
{{- if .Values.modelProxy.chatgptAuth.secretName -}}
https://chatgpt.com/backend-api/codex
{{- else -}}
{{ .Values.modelProxy.upstream }}
{{- end -}}
{{- end -}}

{{- define "co.runnerImage" -}}
{{ .Values.runnerImage.repository }}:{{ .Values.runnerImage.tag | default (printf "%s-codex%s" .Chart.AppVersion .Values.runnerImage.codexVersion) }}
{{- end -}}

{{- define "co.tokensSecret" -}}
{{- if .Values.gateway.auth.tokens -}}
{{ include "co.fullname" . }}-gateway-tokens
{{- else -}}
{{ required "gateway.auth.existingSecret or gateway.auth.tokens is required" .Values.gateway.auth.existingSecret }}
{{- end -}}
{{- end -}}

{{/* Restricted-profile pod settings shared by the controller and the gateway. The service
account token is mounted explicitly (projected, read-only) instead of automounted. */}}
{{- define "co.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "co.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  privileged: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "co.tokenVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 292  # 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - {key: ca.crt, path: ca.crt}
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
{{- end -}}

{{- define "co.tokenMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}

{{/* The Secrets CodexRuns may name, as a JSON list: allowedSecrets, plus the model API key's
Secret when run Pods read it themselves (no model proxy). The controller's --allowed-secret
flags and the admission policy's list. */}}
{{- define "co.allowedSecrets" -}}
{{- $allowed := .Values.allowedSecrets | default list -}}
{{- if not .Values.modelProxy.enabled -}}
{{- $allowed = append $allowed .Values.modelApiKey.secretName -}}
{{- end -}}
{{- $allowed | uniq | toJson -}}
{{- end -}}
