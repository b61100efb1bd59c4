// Validates Kubernetes manifests without a cluster: every document against the API schema of
// its kind (kubernetes-models: the OpenAPI schemas of Kubernetes 1.x as JSON schemas), then the
// rules a schema cannot see:
// - references resolve: volume mounts name a volume of their pod, secret and config map keys
//   exist in the manifests, a Service selects some workload, a workload's selector matches its
//   template;
// - nothing is told to write where it cannot: a `--config` given to strangler or
//   strangler-proxy never lies under a read-only mount (the canary guard writes its rollbacks
//   into the config), so a config mounted from a ConfigMap must go through etcd instead;
// - an etcd URL names members a StatefulSet and its headless Service provide.
//   node check_manifests.mjs DIR   (exit 0: valid; 1: every problem printed)
import fs from 'node:fs';
import path from 'node:path';
import {createRequire} from 'node:module';
import YAML from 'yaml';

const require = createRequire(import.meta.url);
const dir = process.argv[2];
if (!dir) {
  console.error('usage: node check_manifests.mjs DIR');
  process.exit(2);
}

const problems = [];
const objects = [];
for (const file of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  const documents = YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'));
  documents.forEach((document, index) => {
    if (document.errors.length) {
      problems.push(`${file} #${index + 1}: ${document.errors.map((e) => e.message).join('; ')}`);
      return;
    }
    const object = document.toJSON();
    if (object) objects.push({file, index, object});
  });
}

const where = ({file, index, object}) =>
  `${file} #${index + 1} (${object.kind || '?'} ${object.metadata?.name || '?'})`;

// 1. The schema of each kind.
for (const entry of objects) {
  const {apiVersion, kind} = entry.object;
  if (!apiVersion || !kind) {
    problems.push(`${where(entry)}: no apiVersion or kind`);
    continue;
  }
  const module = apiVersion === 'v1' ? `kubernetes-models/v1/${kind}`
                                     : `kubernetes-models/${apiVersion}/${kind}`;
  let Model;
  try {
    Model = require(module)[kind];
  } catch (error) {
    problems.push(`${where(entry)}: unknown kind ${apiVersion}/${kind}`);
    continue;
  }
  try {
    new Model(entry.object).validate();
  } catch (error) {
    problems.push(`${where(entry)}: ${error.message}`);
  }
}

// 2. The rules the schemas cannot see.
const named = (kind, name) => objects.find((e) => e.object.kind === kind &&
                                                  e.object.metadata?.name === name);
const workloads = objects.filter((e) => ['Deployment', 'StatefulSet', 'Job', 'DaemonSet']
                                            .includes(e.object.kind));
const podOf = (object) => object.spec?.template?.spec;
const labelsMatch = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => (labels || {})[k] === v);

for (const entry of objects) {
  const {object} = entry;
  if (object.kind !== 'Namespace' && object.metadata?.namespace === undefined)
    problems.push(`${where(entry)}: no namespace`);
  if (object.kind === 'Service' && object.spec?.selector) {
    const selected = workloads.some((w) => labelsMatch(object.spec.selector,
                                                       w.object.spec?.template?.metadata?.labels));
    if (!selected) problems.push(`${where(entry)}: selects no workload`);
  }
}

const etcdMembers = (url) => url.slice('etcd://'.length).split('/')[0].split(',');

for (const entry of workloads) {
  const {object} = entry;
  const pod = podOf(object) || {};
  if (object.kind !== 'Job' &&
      !labelsMatch(object.spec?.selector?.matchLabels, object.spec?.template?.metadata?.labels))
    problems.push(`${where(entry)}: its selector does not match its pod template`);
  const volumes = new Set([...(pod.volumes || []), ...(object.spec?.volumeClaimTemplates || [])]
                              .map((v) => v.name ?? v.metadata?.name));
  for (const container of [...(pod.initContainers || []), ...(pod.containers || [])]) {
    const mounts = container.volumeMounts || [];
    for (const mount of mounts) {
      if (!volumes.has(mount.name))
        problems.push(`${where(entry)}: container ${container.name} mounts unknown volume ${mount.name}`);
    }
    for (const variable of container.env || []) {
      const ref = variable.valueFrom?.secretKeyRef || variable.valueFrom?.configMapKeyRef;
      if (!ref) continue;
      const kind = variable.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap';
      const source = named(kind, ref.name);
      const data = {...(source?.object.data || {}), ...(source?.object.stringData || {})};
      if (!source || !(ref.key in data))
        problems.push(`${where(entry)}: ${variable.name} reads ${kind} ${ref.name} key ${ref.key}, which the manifests do not define`);
    }
    const args = [...(container.command || []), ...(container.args || [])];
    const at = args.indexOf('--config');
    if (at < 0 || at + 1 >= args.length) continue;
    const config = args[at + 1];
    if (config.startsWith('etcd://')) {
      for (const member of etcdMembers(config)) {
        const host = member.split(':')[0];
        const [pod_name, service] = host.split('.');
        const statefulset = workloads.find((w) => w.object.kind === 'StatefulSet' &&
                                                  w.object.spec?.serviceName === service);
        const ordinal = Number(pod_name.slice(pod_name.lastIndexOf('-') + 1));
        const headless = named('Service', service);
        if (!statefulset || !headless || headless.object.spec?.clusterIP !== 'None' ||
            pod_name !== `${statefulset.object.metadata.name}-${ordinal}` ||
            !(ordinal < (statefulset.object.spec.replicas ?? 1)))
          problems.push(`${where(entry)}: --config names etcd member ${member}, which no StatefulSet and headless Service provide`);
      }
      continue;
    }
    const readOnly = mounts.find((m) => m.readOnly &&
                                        (config === m.mountPath ||
                                         config.startsWith(m.mountPath.replace(/\/$/, '') + '/')));
    if (readOnly)
      problems.push(`${where(entry)}: container ${container.name} is given --config ${config} on the read-only mount ${readOnly.mountPath}: its edits and the guard's rollbacks cannot be written there (keep the config in etcd)`);
  }
}

if (problems.length) {
  for (const problem of problems) console.error('manifests: ' + problem);
  process.exit(1);
}
const kinds = [...new Set(objects.map((e) => e.object.kind))].sort().join(', ');
console.log(`manifests: ${objects.length} documents valid (${kinds})`);
