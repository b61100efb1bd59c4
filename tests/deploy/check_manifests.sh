#!/usr/bin/env bash
# The Kubernetes manifests (deploy/k8s) against the API schemas and the project's rules
# (check_manifests.mjs), and proof that the check fails where it must: a config given on a
# read-only ConfigMap mount, a field of the wrong type, an etcd member nobody provides.
#   tests/deploy/check_manifests.sh   (exit 0 pass, 1 fail, 77 skipped: no node or no modules)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if ! command -v node >/dev/null || [ ! -d "$here/node_modules/kubernetes-models" ]; then
  if [ "${STRANGLER_REQUIRE_NODE:-}" = 1 ]; then
    echo "check_manifests: node or tests/deploy/node_modules missing (scripts/install-deps.sh installs them)" >&2
    exit 1
  fi
  echo "check_manifests: node or its modules missing: skipped" >&2
  exit 77
fi
check() { node "$here/check_manifests.mjs" "$1"; }
check "$root/deploy/k8s"

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-k8s.XXXXXX")
trap 'rm -rf "$work"' EXIT
expect_failure() {  # NAME NEEDLE: the mutated copy in $work/NAME must fail, naming NEEDLE
  local out
  if out=$(check "$work/$1" 2>&1); then
    echo "check_manifests: the $1 case passed but must fail" >&2
    exit 1
  fi
  if ! grep -q -- "$2" <<<"$out"; then
    echo "check_manifests: the $1 case failed without saying '$2':" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "check_manifests: $1 refused as expected"
}
mutate() {  # NAME PYTHON-EXPRESSION-ON-s: copies the manifests and rewrites 50-proxy.yaml
  mkdir -p "$work/$1"
  cp "$root"/deploy/k8s/*.yaml "$work/$1/"
  python3 - "$work/$1/50-proxy.yaml" "$2" <<'PY'
import sys
path, expression = sys.argv[1], sys.argv[2]
s = open(path).read()
t = eval(expression)
assert t != s, "the mutation changed nothing"
open(path, "w").write(t)
PY
}
# The proxy reading its config from the seed ConfigMap, mounted read-only.
mutate read_only_config 's.replace("\"strangler-proxy\", \"--config\",\n                 \"etcd://etcd-0.etcd:2379,etcd-1.etcd:2379,etcd-2.etcd:2379/strangler/prod\",", "\"strangler-proxy\", \"--config\", \"/config/strangler.json\",").replace("          readinessProbe:\n            httpGet: { path: /healthz, port: 9901 }", "          volumeMounts:\n            - { name: config, mountPath: /config, readOnly: true }\n          readinessProbe:\n            httpGet: { path: /healthz, port: 9901 }").replace("      containers:\n        - name: proxy", "      volumes:\n        - name: config\n          configMap: { name: strangler-proxy-seed }\n      containers:\n        - name: proxy")'
expect_failure read_only_config "read-only mount /config"
mutate wrong_type 's.replace("  replicas: 2", "  replicas: two", 1)'
expect_failure wrong_type "replicas"
mutate unknown_member 's.replace("etcd-2.etcd:2379/strangler/prod\",\n                 \"--advertise-admin", "etcd-3.etcd:2379/strangler/prod\",\n                 \"--advertise-admin")'
expect_failure unknown_member "etcd member etcd-3.etcd:2379"
