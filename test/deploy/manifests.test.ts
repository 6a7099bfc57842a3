// The cluster files in k8s/ against each other and against the code they describe: kinds and API
// versions, selectors, ports, probes (requested from the real app), environment variables
// (src/config.ts), RBAC (src/training/backends/kube_api.ts), volumes, the trainer Job template,
// the kustomizations, the inference tier the control pod reaches through REMOTE_MODELS, and the GPU
// and vLLM components (applied here the way kustomize applies them).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { loadAll } from 'js-yaml';
import request from 'supertest';
import { loadConfig } from '../../src/config';
import { parseRemoteModels } from '../../src/engine/remote/config';
import { createApp } from '../../src/server/app';
import { testConfig, testEngine } from '../helpers/service';
import { REPO_ROOT } from '../helpers/vectors';

const K8S = join(REPO_ROOT, 'k8s');
const TEMPLATE_FILE = 'training-job.yaml';

type Labels = Record<string, string>;
interface Meta {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Labels;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    resourceFieldRef?: { containerName?: string; resource: string; divisor?: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: unknown;
  };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  periodSeconds?: number;
  failureThreshold?: number;
}
interface Mount {
  name: string;
  mountPath: string;
  subPath?: string;
  readOnly?: boolean;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  volumeMounts?: Mount[];
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
}
interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string };
  emptyDir?: { medium?: string; sizeLimit?: string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  tolerations?: { key?: string; operator?: string; effect?: string }[];
}
interface PodTemplate {
  metadata?: { labels?: Labels; annotations?: Labels };
  spec: PodSpec;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [key: string]: unknown;
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Labels }; strategy?: { type: string }; template: PodTemplate };
}
interface Service extends K8sObject {
  spec: { type?: string; selector: Labels; ports: { name?: string; port: number; targetPort: string | number }[] };
}
interface Pvc extends K8sObject {
  spec: { accessModes: string[]; resources: { requests: { storage: string } } };
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface Hpa extends K8sObject {
  spec: {
    scaleTargetRef: { apiVersion: string; kind: string; name: string };
    minReplicas: number;
    maxReplicas: number;
    metrics: {
      type: string;
      pods?: { metric: { name: string }; target: { type: string; averageValue?: string } };
      resource?: { name: string; target: { type: string; averageUtilization?: number } };
    }[];
    behavior?: { scaleUp?: unknown; scaleDown?: { stabilizationWindowSeconds?: number } };
  };
}
interface Kustomization {
  apiVersion: string;
  kind: 'Kustomization' | 'Component';
  resources?: string[];
  components?: string[];
  patches?: { path?: string; patch?: string; target?: PatchTarget }[];
  images?: { name: string; newName?: string; newTag?: string }[];
  secretGenerator?: { name: string; envs?: string[]; files?: string[]; options?: { disableNameSuffixHash?: boolean } }[];
  configMapGenerator?: { name: string; envs?: string[]; files?: string[] }[];
}
interface PatchTarget {
  group?: string;
  version?: string;
  kind?: string;
  name?: string;
  labelSelector?: string;
}

// --- reading k8s/ -------------------------------------------------------------------------------

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    })
    .sort();
}

const FILES = yamlFiles(K8S);
const DOCS = FILES.flatMap((file) =>
  (loadAll(readFileSync(file, 'utf8')) as (K8sObject | null)[]).filter((d): d is K8sObject => d !== null).map((doc) => ({ file: relative(K8S, file), doc })),
);
const isKustomization = (file: string) => /(^|\/)kustomization\.ya?ml$/.test(file);
const kustomizationAt = (dir: string): Kustomization => {
  const file = ['kustomization.yaml', 'kustomization.yml'].map((f) => join(dir, f)).find(existsSync);
  if (!file) throw new Error(`no kustomization in ${relative(REPO_ROOT, dir)}`);
  return loadAll(readFileSync(file, 'utf8'))[0] as Kustomization;
};
const BASE = kustomizationAt(K8S);

/** The objects `kubectl apply -k k8s/` creates (the base's resources, no components). */
const BASE_OBJECTS: K8sObject[] = (BASE.resources ?? []).flatMap((file) =>
  (loadAll(readFileSync(join(K8S, file), 'utf8')) as (K8sObject | null)[]).filter((d): d is K8sObject => d !== null),
);
const ofKind = <T extends K8sObject>(kind: string) => BASE_OBJECTS.filter((o) => o.kind === kind) as T[];
const DEPLOYMENTS = ofKind<Deployment>('Deployment');
const SERVICES = ofKind<Service>('Service');
const PVCS = ofKind<Pvc>('PersistentVolumeClaim');
const HPAS = ofKind<Hpa>('HorizontalPodAutoscaler');
/** The generation tier's HPA (hpa.yaml); the inference tier's is in inference.yaml. */
const HPA = HPAS.find((h) => h.metadata.name === 'visualthinker')!;

/** The pod templates of the trainer objects (k8s/training-job.yaml). */
const TRAINER_TEMPLATES = DOCS.filter((d) => d.file === TEMPLATE_FILE).flatMap(({ doc }) => {
  const spec = doc.spec as { template?: PodTemplate; pytorchReplicaSpecs?: Record<string, { template: PodTemplate }> };
  return doc.kind === 'Job' ? [{ kind: 'Job', template: spec.template! }] : Object.entries(spec.pytorchReplicaSpecs ?? {}).map(([role, r]) => ({ kind: `PyTorchJob ${role}`, template: r.template }));
});

const matches = (selector: Labels, labels: Labels = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const podLabels = (d: Deployment) => d.spec.template.metadata?.labels ?? {};
const allContainers = (pod: PodSpec) => [...(pod.initContainers ?? []), ...pod.containers];
const envOf = (c: Container, name: string) => c.env?.find((e) => e.name === name);
const serverContainer = (d: Deployment) => d.spec.template.spec.containers[0];
const httpPort = (c: Container) => c.ports?.find((p) => p.name === 'http')?.containerPort;
const stateOwner = () => {
  const owners = DEPLOYMENTS.filter((d) => envOf(serverContainer(d), 'TRAIN_BACKEND')?.value === 'kubernetes');
  expect(owners).toHaveLength(1);
  return owners[0];
};

/** The keys of the EnvSchema object in src/config.ts (the variables the service reads). */
function configKeys(): Set<string> {
  const source = readFileSync(join(REPO_ROOT, 'src', 'config.ts'), 'utf8');
  const body = /const EnvSchema = z\.object\(\{([\s\S]*?)\n\}\);/.exec(source)?.[1];
  if (!body) throw new Error('src/config.ts: EnvSchema = z.object({...}) not found');
  return new Set([...body.matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]));
}

/** A container's environment as the kubelet would give it (valueFrom resolved with test values). */
function resolvedEnv(container: Container, namespace = 'vt-test'): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = namespace;
    else if (e.valueFrom?.resourceFieldRef) {
      const { resource, divisor = '1' } = e.valueFrom.resourceFieldRef;
      const [kind, name] = resource.split('.') as ['requests' | 'limits', string];
      const quantity = container.resources?.[kind]?.[name];
      expect(quantity).toBeDefined();
      expect(divisor).toBe('1');
      env[e.name] = String(Math.ceil(cpuCores(quantity!)));
    } else if (e.valueFrom?.secretKeyRef) env[e.name] = 'test-admin-token';
    else throw new Error(`env ${e.name}: unsupported valueFrom ${JSON.stringify(e.valueFrom)}`);
  }
  return env;
}
const cpuCores = (q: string) => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));

// --- kinds and API versions ---------------------------------------------------------------------

const KNOWN: Record<string, string[]> = {
  'apps/v1': ['Deployment'],
  v1: ['Service', 'PersistentVolumeClaim', 'ServiceAccount'],
  'rbac.authorization.k8s.io/v1': ['Role', 'RoleBinding'],
  'autoscaling/v2': ['HorizontalPodAutoscaler'],
  'policy/v1': ['PodDisruptionBudget'],
  'batch/v1': ['Job'],
  'kubeflow.org/v1': ['PyTorchJob'],
  'kustomize.config.k8s.io/v1beta1': ['Kustomization'],
  'kustomize.config.k8s.io/v1alpha1': ['Component'],
};

describe('k8s/ manifests', () => {
  test('every YAML document parses and is a kind at the API version this project uses', () => {
    expect(FILES.length).toBeGreaterThan(5);
    for (const { file, doc } of DOCS) {
      expect({ file, kind: doc.kind, known: KNOWN[doc.apiVersion]?.includes(doc.kind) ?? false }).toEqual({ file, kind: doc.kind, known: true });
      if (doc.kind === 'Kustomization' || doc.kind === 'Component') expect(isKustomization(file)).toBe(true);
      else expect(typeof doc.metadata?.name).toBe('string');
      // Trainer objects exist only as the template the service fills in.
      if (doc.kind === 'Job' || doc.kind === 'PyTorchJob') expect(file).toBe(TEMPLATE_FILE);
    }
    // One object of each kind and name (kustomize refuses duplicates).
    const ids = BASE_OBJECTS.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('the kustomizations list exactly the manifests and files that exist; the trainer template stays out', () => {
    const listed = new Set(BASE.resources);
    const manifests = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && !isKustomization(f) && f !== TEMPLATE_FILE);
    expect([...listed].sort()).toEqual(manifests.sort());
    expect(listed.has(TEMPLATE_FILE)).toBe(false);

    const kustomizationDirs = FILES.filter((f) => isKustomization(relative(K8S, f))).map(dirname);
    expect(kustomizationDirs.map((d) => relative(K8S, d)).sort()).toEqual(['', 'admin-secret', 'gpu', 'vllm']);
    for (const dir of kustomizationDirs) {
      const k = kustomizationAt(dir);
      const paths = [...(k.resources ?? []), ...(k.components ?? []), ...(k.patches ?? []).flatMap((p) => (p.path ? [p.path] : []))];
      for (const entry of paths) {
        const target = resolve(dir, entry);
        expect({ entry, exists: existsSync(target) }).toEqual({ entry, exists: true });
        // kustomize refuses a base that contains the kustomization (a "cycle").
        const up = relative(target, dir);
        expect({ entry, ancestor: up === '' || (!up.startsWith('..') && !up.startsWith(sep)) }).toEqual({ entry, ancestor: false });
      }
      for (const component of k.components ?? []) expect(kustomizationAt(resolve(dir, component)).kind).toBe('Component');
      // Secret inputs are never committed: git-ignored, with a committed example beside them.
      for (const file of (k.secretGenerator ?? []).flatMap((g) => [...(g.envs ?? []), ...(g.files ?? [])])) {
        expect({ file, ignored: gitIgnored(join(dir, file)) }).toEqual({ file, ignored: true });
        expect(existsSync(join(dir, `${file}.example`))).toBe(true);
      }
      for (const file of (k.configMapGenerator ?? []).flatMap((g) => [...(g.envs ?? []), ...(g.files ?? [])])) expect(existsSync(join(dir, file))).toBe(true);
    }
  });

  test('selectors match the labels and names they target; no selector reaches another set of pods', () => {
    const trainerPods = TRAINER_TEMPLATES.map((t) => t.template.metadata?.labels ?? {});
    for (const d of DEPLOYMENTS) {
      expect(matches(d.spec.selector.matchLabels, podLabels(d))).toBe(true);
      for (const other of DEPLOYMENTS) if (other !== d) expect(matches(d.spec.selector.matchLabels, podLabels(other))).toBe(false);
      for (const labels of trainerPods) expect(matches(d.spec.selector.matchLabels, labels)).toBe(false);
    }
    expect(SERVICES.length).toBeGreaterThan(0);
    for (const s of SERVICES) {
      const targets = DEPLOYMENTS.filter((d) => matches(s.spec.selector, podLabels(d)));
      expect({ service: s.metadata.name, targets: targets.length }).toEqual({ service: s.metadata.name, targets: 1 });
      for (const labels of trainerPods) expect(matches(s.spec.selector, labels)).toBe(false);
      const ports = targets[0].spec.template.spec.containers.flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports) {
        const found = typeof p.targetPort === 'string' ? ports.find((cp) => cp.name === p.targetPort) : ports.find((cp) => cp.containerPort === p.targetPort);
        expect({ service: s.metadata.name, port: p.targetPort, found: Boolean(found) }).toEqual({ service: s.metadata.name, port: p.targetPort, found: true });
        // Services and ports share the container port's name.
        if (found?.name) expect(p.name).toBe(found.name);
      }
    }

    // Each HPA scales an existing Deployment that leaves its replica count to it; no two scale the same one.
    expect(HPAS.map((h) => h.metadata.name).sort()).toEqual(['visualthinker', 'visualthinker-inference']);
    for (const hpa of HPAS) {
      expect(hpa.spec.scaleTargetRef.apiVersion).toBe('apps/v1');
      expect(hpa.spec.scaleTargetRef.kind).toBe('Deployment');
      const target = DEPLOYMENTS.find((d) => d.metadata.name === hpa.spec.scaleTargetRef.name);
      expect({ hpa: hpa.metadata.name, target: target?.metadata.name, replicas: target?.spec.replicas }).toEqual({ hpa: hpa.metadata.name, target: hpa.spec.scaleTargetRef.name, replicas: undefined });
    }
    expect(new Set(HPAS.map((h) => h.spec.scaleTargetRef.name)).size).toBe(HPAS.length);
    const scaled = DEPLOYMENTS.find((d) => d.metadata.name === HPA.spec.scaleTargetRef.name);

    // Each autoscaled tier has a PDB covering exactly its pods, never a trainer's, and leaving room
    // for one eviction at its HPA's minReplicas (so a drain is never blocked).
    const pdbs = ofKind<K8sObject & { spec: { minAvailable?: number; maxUnavailable?: number; selector: { matchLabels: Labels } } }>('PodDisruptionBudget');
    expect(pdbs.map((p) => p.metadata.name).sort()).toEqual(['visualthinker', 'visualthinker-inference']);
    for (const pdb of pdbs) {
      const covered = DEPLOYMENTS.filter((d) => matches(pdb.spec.selector.matchLabels, podLabels(d)));
      expect(covered).toHaveLength(1);
      const hpa = HPAS.find((h) => h.spec.scaleTargetRef.name === covered[0].metadata.name)!;
      expect(hpa).toBeDefined();
      if (pdb.spec.minAvailable !== undefined) expect(pdb.spec.minAvailable).toBeLessThan(hpa.spec.minReplicas);
      else expect(pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
      for (const labels of trainerPods) expect(matches(pdb.spec.selector.matchLabels, labels)).toBe(false);
    }
    const pdb = pdbs.find((p) => p.metadata.name === 'visualthinker')!;
    expect(DEPLOYMENTS.filter((d) => matches(pdb.spec.selector.matchLabels, podLabels(d)))).toEqual([scaled]);
  });

  test.each(['visualthinker', 'visualthinker-inference'])('HPA %s reads vlm_requests_waiting (a metric the service exports) and CPU, with sane bounds', (name) => {
    const { spec } = HPAS.find((h) => h.metadata.name === name)!;
    // The generation tier keeps two pods for clients; the inference tier one for the control pod.
    expect(spec.minReplicas).toBeGreaterThanOrEqual(name === 'visualthinker' ? 2 : 1);
    expect(spec.maxReplicas).toBeGreaterThan(spec.minReplicas);
    const pods = spec.metrics.find((m) => m.type === 'Pods');
    expect(pods?.pods?.metric.name).toBe('vlm_requests_waiting');
    expect(pods?.pods?.target.type).toBe('AverageValue');
    const metricsSource = readFileSync(join(REPO_ROOT, 'src', 'server', 'metrics.ts'), 'utf8');
    expect(metricsSource).toContain(`name: '${pods!.pods!.metric.name}'`);
    const cpu = spec.metrics.find((m) => m.type === 'Resource' && m.resource?.name === 'cpu');
    expect(cpu?.resource?.target.type).toBe('Utilization');
    // Utilisation is relative to the requests: every container of the scaled pods has one.
    const scaled = DEPLOYMENTS.find((d) => d.metadata.name === spec.scaleTargetRef.name)!;
    for (const c of allContainers(scaled.spec.template.spec)) expect({ container: c.name, cpu: c.resources?.requests?.cpu !== undefined }).toEqual({ container: c.name, cpu: true });
    // The inference tier needs nothing of its own: the same metrics, scaled by the same adapter rule.
    if (name !== 'visualthinker') expect(spec.metrics).toEqual(HPA.spec.metrics);
    // A pod takes minutes to load a model: scale-down waits.
    expect(spec.behavior?.scaleDown?.stabilizationWindowSeconds).toBeGreaterThanOrEqual(300);
    // The custom-metrics adapter rule the metric needs is documented beside it.
    const text = readFileSync(join(K8S, 'hpa.yaml'), 'utf8');
    expect(text).toMatch(/seriesQuery: 'vlm_requests_waiting/);
    expect(text).toMatch(/metricsQuery:/);
  });

  test('ports and probes refer to the container port; the startup probe allows for model loading', () => {
    for (const d of DEPLOYMENTS) {
      const c = serverContainer(d);
      const port = httpPort(c);
      expect(port).toBeDefined();
      for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
        expect(probe?.httpGet).toBeDefined();
        const p = probe!.httpGet!.port;
        expect(typeof p === 'string' ? c.ports!.some((cp) => cp.name === p) : c.ports!.some((cp) => cp.containerPort === p)).toBe(true);
      }
      expect(c.readinessProbe!.httpGet!.path).toBe('/readyz');
      expect(c.startupProbe!.httpGet!.path).toBe('/readyz');
      expect(c.livenessProbe!.httpGet!.path).toBe('/healthz');
      expect((c.startupProbe!.periodSeconds ?? 10) * (c.startupProbe!.failureThreshold ?? 3)).toBeGreaterThanOrEqual(300);
      // The port the service listens on (PORT) is the container port, and Prometheus scrapes it.
      expect(Number(envOf(c, 'PORT')?.value)).toBe(port);
      const annotations = d.spec.template.metadata?.annotations ?? {};
      expect(Number(annotations['prometheus.io/port'])).toBe(port);
      expect(annotations['prometheus.io/path']).toBe('/metrics');
    }
  });

  test('probe and scrape paths are GET routes of the real app (200 or 503, never 404)', async () => {
    const paths = new Set<string>();
    for (const d of DEPLOYMENTS) {
      const c = serverContainer(d);
      for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) paths.add(probe!.httpGet!.path);
      paths.add(d.spec.template.metadata!.annotations!['prometheus.io/path']);
    }
    const engine = testEngine();
    const { app, dispose } = createApp({ config: testConfig(), engine });
    try {
      for (const path of paths) {
        const res = await request(app).get(path);
        expect({ path, status: [200, 503].includes(res.status) ? 'ok' : res.status }).toEqual({ path, status: 'ok' });
      }
    } finally {
      dispose();
      await engine.dispose();
    }
  });

  test('every variable the Deployments set is one src/config.ts reads, and loadConfig accepts the values', () => {
    const keys = configKeys();
    expect(keys.has('PORT') && keys.has('K8S_STATE_PVC')).toBe(true);
    for (const d of DEPLOYMENTS) {
      for (const c of allContainers(d.spec.template.spec)) {
        for (const e of c.env ?? []) expect({ deployment: d.metadata.name, variable: e.name, known: keys.has(e.name) }).toEqual({ deployment: d.metadata.name, variable: e.name, known: true });
        for (const e of c.env ?? []) if (e.valueFrom?.resourceFieldRef?.containerName) expect(e.valueFrom.resourceFieldRef.containerName).toBe(c.name);
      }
      const c = serverContainer(d);
      const config = loadConfig(resolvedEnv(c));
      expect(config.port).toBe(httpPort(c));
      const mounts = c.volumeMounts ?? [];
      expect(mounts.map((m) => m.mountPath)).toContain(config.stateDir);
      if (envOf(c, 'MODELS_DIR')) expect(mounts.find((m) => m.mountPath === envOf(c, 'MODELS_DIR')!.value)?.readOnly).toBe(true);
      if (envOf(c, 'DATA_DIR')) expect(mounts.map((m) => m.mountPath)).toContain(config.dataDir);
      // Draining (SHUTDOWN_DELAY_MS + SHUTDOWN_GRACE_MS) ends before the kubelet's SIGKILL, with 5 s
      // left to release the model sessions and the database.
      const graceSeconds = d.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      expect(graceSeconds * 1000).toBeGreaterThanOrEqual(config.shutdownDelayMs + config.shutdownGraceMs + 5000);
    }
  });

  test('the admin token comes only from the optional Secret the admin-secret kustomization generates', () => {
    const generator = kustomizationAt(join(K8S, 'admin-secret')).secretGenerator?.[0];
    expect(generator?.options?.disableNameSuffixHash).toBe(true);
    for (const d of DEPLOYMENTS) {
      const token = envOf(serverContainer(d), 'ADMIN_TOKEN');
      if (!token) continue;
      expect(token.value).toBeUndefined();
      expect(token.valueFrom?.secretKeyRef).toEqual({ name: generator!.name, key: 'ADMIN_TOKEN', optional: true });
      const example = readFileSync(join(K8S, 'admin-secret', `${generator!.envs![0]}.example`), 'utf8');
      expect(example).toMatch(/^ADMIN_TOKEN=$/m);
    }
    // No Secret object and no literal token anywhere in k8s/.
    expect(DOCS.some(({ doc }) => doc.kind === 'Secret')).toBe(false);
    for (const file of FILES) expect(readFileSync(file, 'utf8')).not.toMatch(/ADMIN_TOKEN\s*[:=]\s*["']?[A-Za-z0-9+/_-]{8,}/);
  });

  test('one pod owns the state volume: the training backend, the database and the job queue', () => {
    const owner = stateOwner();
    expect(owner.spec.replicas).toBe(1);
    expect(owner.spec.strategy?.type).toBe('Recreate');
    expect(owner.metadata.name).not.toBe(HPA.spec.scaleTargetRef.name);
    const c = serverContainer(owner);
    const config = loadConfig(resolvedEnv(c));
    expect(config.trainBackend).toBe('kubernetes');
    expect(config.k8sNamespace).toBe('vt-test'); // the downward API's metadata.namespace
    expect(envOf(c, 'K8S_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.namespace');
    const pod = owner.spec.template.spec;
    const stateMount = c.volumeMounts!.find((m) => m.mountPath === config.stateDir)!;
    expect(stateMount.readOnly).toBeFalsy();
    const stateClaim = pod.volumes!.find((v) => v.name === stateMount.name)?.persistentVolumeClaim?.claimName;
    expect(stateClaim).toBe(config.k8sStatePvc);
    expect(PVCS.find((p) => p.metadata.name === stateClaim)?.spec.accessModes).toContain('ReadWriteMany');

    // Every other pod mounts the state volume read-only (only STATE_DIR/models, the exported models)
    // and keeps its own STATE_DIR on an emptyDir.
    for (const d of DEPLOYMENTS.filter((x) => x !== owner)) {
      const other = serverContainer(d);
      const otherConfig = loadConfig(resolvedEnv(other));
      const volumes = d.spec.template.spec.volumes ?? [];
      const claimOf = (m: Mount) => volumes.find((v) => v.name === m.name)?.persistentVolumeClaim?.claimName;
      const ownState = other.volumeMounts!.find((m) => m.mountPath === otherConfig.stateDir)!;
      expect(volumes.find((v) => v.name === ownState.name)?.emptyDir).toBeDefined();
      for (const m of other.volumeMounts!.filter((x) => claimOf(x) === stateClaim)) {
        expect(m).toEqual({ name: m.name, mountPath: join(otherConfig.stateDir, 'models'), subPath: 'models', readOnly: true });
      }
      expect(envOf(other, 'ADMIN_TOKEN')).toBeUndefined();
      expect(d.spec.template.spec.automountServiceAccountToken).toBe(false);
    }
  });

  test('the control pod reaches the inference tier through its Service by REMOTE_MODELS; the tier scales on its own', () => {
    const owner = stateOwner();
    const config = loadConfig(resolvedEnv(serverContainer(owner)));
    // Requests that name no model (evaluation runs included) go to the remote model.
    const remote = config.remoteModels.find((m) => m.name === config.defaultModel);
    expect(remote).toBeDefined();
    // The remote name is not one of the image's model folders (the start would refuse it).
    expect(existsSync(join(REPO_ROOT, 'models', remote!.name))).toBe(false);
    // Named at least twice, so a failed attempt moves to the other entry: through the Service again.
    expect(remote!.replicas.length).toBeGreaterThanOrEqual(2);
    const services = new Set<string>();
    for (const replica of remote!.replicas) {
      const url = new URL(replica.url);
      expect(url.protocol).toBe('http:');
      expect(url.pathname).toBe('/v1');
      // The Service's DNS name: its name in the same namespace, or the full name.
      const host = url.hostname.replace(/\.vt-test(\.svc(\.cluster\.local)?)?$/, '');
      const service = SERVICES.find((x) => x.metadata.name === host);
      expect({ host: url.hostname, service: service?.metadata.name }).toEqual({ host: url.hostname, service: host });
      expect(service!.spec.ports.map((p) => p.port)).toContain(Number(url.port || 80));
      services.add(service!.metadata.name);
      // The id is a model folder the tier's pods serve (the image's models/ or the models volume).
      expect(existsSync(join(REPO_ROOT, 'models', replica.remoteId, 'onnx'))).toBe(true);
    }
    expect(services.size).toBe(1);
    const service = SERVICES.find((x) => services.has(x.metadata.name))!;
    // A cluster-internal Service selecting exactly the tier's pods: not the control pod, not the
    // clients' generation pods.
    expect(service.spec.type ?? 'ClusterIP').toBe('ClusterIP');
    const tier = DEPLOYMENTS.filter((d) => matches(service.spec.selector, podLabels(d)));
    expect(tier.map((d) => d.metadata.name)).toEqual(['visualthinker-inference']);
    expect(tier[0]).not.toBe(owner);
    expect(tier[0].metadata.name).not.toBe(HPA.spec.scaleTargetRef.name);
    // Its own HPA scales it; the count is the HPA's.
    const hpa = HPAS.find((h) => h.spec.scaleTargetRef.name === tier[0].metadata.name);
    expect(hpa?.metadata.name).toBe('visualthinker-inference');
    expect(tier[0].spec.replicas).toBeUndefined();
    // Its pods serve the model folders the control pod sees, from the same volume.
    const tierContainer = serverContainer(tier[0]);
    const tierConfig = loadConfig(resolvedEnv(tierContainer));
    const claimAt = (d: Deployment, path: string) => {
      const mount = serverContainer(d).volumeMounts?.find((m) => m.mountPath === path);
      return d.spec.template.spec.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim?.claimName;
    };
    expect(envOf(tierContainer, 'MODELS_DIR')?.value).toBe(envOf(serverContainer(owner), 'MODELS_DIR')?.value);
    expect(claimAt(tier[0], envOf(tierContainer, 'MODELS_DIR')!.value!)).toBe(claimAt(owner, envOf(serverContainer(owner), 'MODELS_DIR')!.value!));
    expect(tierConfig.remoteModels).toEqual([]); // the tier serves; it does not forward
    // One evaluation run (MAX_BATCH_SIZE items in flight) fits in the control pod's in-flight bound
    // over the tier, so its items wait in the tier's pods, where the HPA's metric sees them.
    expect(remote!.replicas.length * config.remoteMaxInFlight).toBeGreaterThanOrEqual(config.maxBatchSize);
    // Every container of the base asks for CPU and memory (HPA utilisation, scheduling).
    for (const d of DEPLOYMENTS) {
      for (const c of allContainers(d.spec.template.spec)) {
        expect({ deployment: d.metadata.name, container: c.name, cpu: Boolean(c.resources?.requests?.cpu), memory: Boolean(c.resources?.requests?.memory) }).toEqual({
          deployment: d.metadata.name,
          container: c.name,
          cpu: true,
          memory: true,
        });
      }
    }
  });

  test('the Role grants exactly what kube_api.ts calls, bound to the control pod\'s service account', () => {
    const source = readFileSync(join(REPO_ROOT, 'src', 'training', 'backends', 'kube_api.ts'), 'utf8');
    const custom = /PYTORCHJOBS = \{ group: '([^']+)', version: '[^']+', plural: '([^']+)' \}/.exec(source);
    expect(custom).not.toBeNull();
    const [, customGroup, customPlural] = custom!;
    // Client method -> the permission its request needs (group/resource/verb).
    const PERMISSION: Record<string, string> = {
      'batch.createNamespacedJob': 'batch/jobs/create',
      'batch.readNamespacedJob': 'batch/jobs/get',
      'batch.listNamespacedJob': 'batch/jobs/list',
      'batch.deleteNamespacedJob': 'batch/jobs/delete',
      'custom.createNamespacedCustomObject': `${customGroup}/${customPlural}/create`,
      'custom.getNamespacedCustomObject': `${customGroup}/${customPlural}/get`,
      'custom.listNamespacedCustomObject': `${customGroup}/${customPlural}/list`,
      'custom.deleteNamespacedCustomObject': `${customGroup}/${customPlural}/delete`,
      'core.listNamespacedPod': '/pods/list',
      'core.readNamespacedPod': '/pods/get',
      'core.deleteCollectionNamespacedPod': '/pods/deletecollection',
      'core.deleteNamespacedPod': '/pods/delete',
      'core.readNamespacedPodLog': '/pods/log/get',
      'logs.log': '/pods/log/get',
    };
    const calls = [...source.matchAll(/\b(batch|custom|core|logs)\.(\w+)\(/g)].map((m) => `${m[1]}.${m[2]}`);
    expect(calls.length).toBeGreaterThanOrEqual(8);
    // A call missing here must be mapped (and granted) before this test passes.
    for (const call of calls) expect({ call, mapped: call in PERMISSION }).toEqual({ call, mapped: true });
    const needed = new Set(calls.map((c) => PERMISSION[c]));

    const [role] = ofKind<K8sObject & { rules: Rule[] }>('Role');
    const granted = new Set(role.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}/${v}`)))));
    for (const rule of role.rules) for (const field of [rule.apiGroups, rule.resources, rule.verbs]) expect(field).not.toContain('*');
    expect([...granted].sort()).toEqual([...needed].sort());

    // The trainer objects the backend creates are of the granted groups.
    const trainerGroups = DOCS.filter((d) => d.file === TEMPLATE_FILE).map(({ doc }) => doc.apiVersion.split('/')[0]);
    expect(trainerGroups.sort()).toEqual(['batch', customGroup].sort());

    const [binding] = ofKind<K8sObject & { roleRef: { apiGroup: string; kind: string; name: string }; subjects: { kind: string; name: string }[] }>('RoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
    const [account] = ofKind<K8sObject>('ServiceAccount');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: account.metadata.name }]);
    const owner = stateOwner();
    expect(owner.spec.template.spec.serviceAccountName).toBe(account.metadata.name);
    expect(owner.spec.template.spec.automountServiceAccountToken).toBe(true);
    // No other pod runs with this account.
    for (const d of DEPLOYMENTS) if (d !== owner) expect(d.spec.template.spec.serviceAccountName).toBeUndefined();
  });

  test('volume mounts refer to declared volumes; claims exist with the access modes their users need', () => {
    const claims = new Map(PVCS.map((p) => [p.metadata.name, p]));
    const pods = [...DEPLOYMENTS.map((d) => ({ what: d.metadata.name, pod: d.spec.template.spec })), ...TRAINER_TEMPLATES.map((t) => ({ what: t.kind, pod: t.template.spec }))];
    for (const { what, pod } of pods) {
      const volumes = pod.volumes ?? [];
      expect(new Set(volumes.map((v) => v.name)).size).toBe(volumes.length);
      for (const c of allContainers(pod)) {
        const paths = (c.volumeMounts ?? []).map((m) => m.mountPath);
        expect(new Set(paths).size).toBe(paths.length);
        for (const m of c.volumeMounts ?? []) expect({ what, container: c.name, volume: m.name, declared: volumes.some((v) => v.name === m.name) }).toEqual({ what, container: c.name, volume: m.name, declared: true });
      }
      for (const v of volumes) {
        if (v.persistentVolumeClaim) expect({ what, claim: v.persistentVolumeClaim.claimName, exists: claims.has(v.persistentVolumeClaim.claimName) }).toEqual({ what, claim: v.persistentVolumeClaim.claimName, exists: true });
      }
      // Shared memory for the ONNX/PyTorch workers: a memory-backed emptyDir at /dev/shm.
      const shm = pod.containers[0].volumeMounts?.find((m) => m.mountPath === '/dev/shm');
      expect(volumes.find((v) => v.name === shm?.name)?.emptyDir?.medium).toBe('Memory');
    }
    for (const p of PVCS) expect(['ReadWriteMany', 'ReadOnlyMany'].some((mode) => p.spec.accessModes.includes(mode))).toBe(true);
    // Trainer pods write into the state volume and run on other nodes than the service.
    expect(claims.get(stateOwner().spec.template.spec.volumes!.find((v) => v.name === 'state')!.persistentVolumeClaim!.claimName)!.spec.accessModes).toEqual(['ReadWriteMany']);
  });

  test('trainer pods see the models and data at the control pod\'s paths, as the same user, with the trainer image', () => {
    const owner = stateOwner();
    const c = serverContainer(owner);
    const ownerVolumes = owner.spec.template.spec.volumes ?? [];
    const claimAt = (pod: PodSpec, container: Container, path: string) => {
      const mount = container.volumeMounts?.find((m) => m.mountPath === path);
      return mount && pod.volumes?.find((v) => v.name === mount.name)?.persistentVolumeClaim?.claimName;
    };
    const sharedPaths = ['MODELS_DIR', 'DATA_DIR'].map((name) => envOf(c, name)!.value!);
    expect(TRAINER_TEMPLATES.length).toBe(3); // Job, PyTorchJob Master and Worker
    for (const { kind, template } of TRAINER_TEMPLATES) {
      const trainer = template.spec.containers[0];
      for (const path of sharedPaths) {
        expect({ kind, path, claim: claimAt(template.spec, trainer, path) }).toEqual({ kind, path, claim: claimAt(owner.spec.template.spec, c, path) });
      }
      // The backend adds the state volume itself (K8S_STATE_PVC at STATE_DIR).
      expect(template.spec.volumes?.some((v) => v.name === 'state')).toBe(false);
      // Job folders are created by the service and written by the trainer: one uid for both.
      expect(template.spec.securityContext).toMatchObject({ runAsUser: owner.spec.template.spec.securityContext!.runAsUser, fsGroup: owner.spec.template.spec.securityContext!.fsGroup });
      expect(trainer.image).toBe(envOf(c, 'K8S_TRAINER_IMAGE')!.value);
    }
    expect(ownerVolumes.length).toBeGreaterThan(0);
  });

  test('pods run as the image\'s non-root user (uid 1000, `node` in the CPU image) without privilege escalation', () => {
    const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    const runtime = dockerfile.split(/^FROM /m).find((stage) => / AS runtime\b/.test(stage))!;
    expect(runtime).toMatch(/^USER node$/m); // uid 1000 in the node images
    for (const d of DEPLOYMENTS) {
      const security = d.spec.template.spec.securityContext;
      expect(security).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 });
      for (const c of allContainers(d.spec.template.spec)) expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
      // A read-only root file system needs a writable /tmp.
      if (serverContainer(d).securityContext?.readOnlyRootFilesystem) expect(serverContainer(d).volumeMounts?.some((m) => m.mountPath === '/tmp')).toBe(true);
    }
  });
});

// --- the GPU component, applied as kustomize applies it ------------------------------------------

type Json = unknown;

function unescapePointer(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** RFC 6902 add/replace/remove (what kustomize's JSON patches do); a missing parent is an error. */
function applyJsonPatch(doc: Json, ops: { op: string; path: string; value?: Json }[]): void {
  for (const { op, path, value } of ops) {
    const tokens = path.split('/').slice(1).map(unescapePointer);
    const last = tokens.pop()!;
    let parent = doc as Record<string, Json> | Json[];
    for (const token of tokens) {
      const next = Array.isArray(parent) ? parent[Number(token)] : parent[token];
      if (next === undefined || next === null || typeof next !== 'object') throw new Error(`patch ${op} ${path}: ${token} is missing`);
      parent = next as Record<string, Json> | Json[];
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (op === 'add') parent.splice(index, 0, structuredClone(value));
      else if (op === 'replace') parent[index] = structuredClone(value);
      else if (op === 'remove') parent.splice(index, 1);
      else throw new Error(`unsupported op ${op}`);
    } else if (op === 'add' || op === 'replace') {
      if (op === 'replace' && !(last in parent)) throw new Error(`patch replace ${path}: nothing to replace`);
      parent[last] = structuredClone(value);
    } else if (op === 'remove') delete parent[last];
    else throw new Error(`unsupported op ${op}`);
  }
}

function targetMatches(object: K8sObject, target: PatchTarget): boolean {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  if (target.group !== undefined && target.group !== group) return false;
  if (target.version !== undefined && target.version !== version) return false;
  if (target.kind !== undefined && target.kind !== object.kind) return false;
  if (target.name !== undefined && target.name !== object.metadata.name) return false;
  if (target.labelSelector) {
    const selector = Object.fromEntries(target.labelSelector.split(',').map((kv) => kv.split('=').map((s) => s.trim())));
    if (!matches(selector, object.metadata.labels)) return false;
  }
  return true;
}

function setImage(image: string, rules: NonNullable<Kustomization['images']>): string {
  const at = image.lastIndexOf(':');
  const [name, tag] = at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
  const rule = rules.find((r) => r.name === name);
  if (!rule) return image;
  const newTag = rule.newTag ?? tag;
  return `${rule.newName ?? name}${newTag ? `:${newTag}` : ''}`;
}

/** Lists that Kubernetes' strategic merge merges by `name` (the fields of a pod template used here). */
const MERGED_BY_NAME = new Set(['containers', 'initContainers', 'env', 'volumes']);

/**
 * A strategic merge patch as kustomize applies one (the subset these manifests use): maps merge
 * key by key, the lists above merge item by item on `name` (an unknown name is appended), any
 * other list or value is replaced.
 */
function strategicMerge(target: Record<string, Json>, patch: Record<string, Json>): void {
  for (const [key, value] of Object.entries(patch)) {
    const current = target[key];
    if (Array.isArray(value) && Array.isArray(current) && MERGED_BY_NAME.has(key)) {
      for (const item of value as Record<string, Json>[]) {
        const same = (current as Record<string, Json>[]).find((c) => c.name === item.name);
        if (same) strategicMerge(same, item);
        else current.push(structuredClone(item));
      }
    } else if (value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current)) {
      strategicMerge(current as Record<string, Json>, value as Record<string, Json>);
    } else {
      target[key] = structuredClone(value);
    }
  }
}

/** The objects of a kustomization's `resources` files (relative to `dir`). */
const resourcesOf = (k: Kustomization, dir: string): K8sObject[] =>
  (k.resources ?? []).flatMap((file) => (loadAll(readFileSync(join(dir, file), 'utf8')) as (K8sObject | null)[]).filter((d): d is K8sObject => d !== null));

function applyComponent(objects: K8sObject[], component: Kustomization, dir: string): { objects: K8sObject[]; patched: number } {
  // A component's own resources join the base's; its patches apply to both.
  const out = [...structuredClone(objects), ...resourcesOf(component, dir)];
  let patched = 0;
  for (const p of component.patches ?? []) {
    const text = p.patch ?? readFileSync(join(dir, p.path!), 'utf8');
    const parsed = loadAll(text)[0] as { op: string; path: string; value?: Json }[] | K8sObject;
    const targets = out.filter((o) => targetMatches(o, p.target ?? {}));
    // A list is a JSON 6902 patch; an object a strategic merge patch naming its target's kind and name.
    if (!Array.isArray(parsed)) {
      expect(targets.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([`${parsed.kind}/${parsed.metadata.name}`]);
    }
    for (const object of targets) {
      if (Array.isArray(parsed)) applyJsonPatch(object, parsed);
      else strategicMerge(object as Record<string, Json>, parsed as unknown as Record<string, Json>);
      patched++;
    }
  }
  for (const object of out.filter((o): o is Deployment => o.kind === 'Deployment')) {
    for (const c of allContainers(object.spec.template.spec)) c.image = setImage(c.image, component.images ?? []);
  }
  return { objects: out, patched };
}

describe('k8s/gpu component', () => {
  const gpuDir = join(K8S, 'gpu');
  const component = kustomizationAt(gpuDir);

  test('switches every service pod to the gpu image with one nvidia.com/gpu and the GPU taint tolerated', () => {
    expect(component.kind).toBe('Component');
    const { objects, patched } = applyComponent(BASE_OBJECTS, component, gpuDir);
    const deployments = objects.filter((o): o is Deployment => o.kind === 'Deployment');
    expect(patched).toBe(DEPLOYMENTS.length);
    const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      const server = serverContainer(d);
      // The patch addresses containers/0: that must be the service's container.
      expect(server.name).toBe('server');
      expect(server.resources?.limits?.['nvidia.com/gpu']).toBe('1');
      expect(pod.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
      for (const c of allContainers(pod)) {
        const tag = c.image.split(':').pop()!;
        expect(c.image).toBe('visualthinker:gpu');
        expect(dockerfile).toMatch(new RegExp(`^FROM .* AS ${tag}$`, 'm'));
      }
      // Same user as the CPU variant and the trainer pods.
      expect(pod.securityContext).toEqual(DEPLOYMENTS.find((x) => x.metadata.name === d.metadata.name)!.spec.template.spec.securityContext);
    }
    // The trainer image the control pod names is the GPU variant's image.
    expect(envOf(serverContainer(stateOwner()), 'K8S_TRAINER_IMAGE')?.value).toBe(serverContainer(deployments[0]).image);
    // The base leaves it to the operator to enable: the CPU variant is the default.
    expect(BASE.components ?? []).toEqual([]);
    expect(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')).toMatch(/^# components:\n#\s+- gpu$/m);
  });
});

describe('k8s/vllm component', () => {
  const vllmDir = join(K8S, 'vllm');
  const component = kustomizationAt(vllmDir);
  const { objects, patched } = applyComponent(BASE_OBJECTS, component, vllmDir);
  const deployments = objects.filter((o): o is Deployment => o.kind === 'Deployment');
  const vllm = deployments.find((d) => !DEPLOYMENTS.some((b) => b.metadata.name === d.metadata.name))!;
  const container = vllm.spec.template.spec.containers[0];
  /** The value after `--flag` in the container's arguments (undefined when absent). */
  const argOf = (flag: string) => {
    const args = container.args ?? [];
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
  };
  const control = () => deployments.find((d) => d.metadata.name === stateOwner().metadata.name)!;

  test('adds one vLLM Deployment and the Service that selects exactly its pods; the base is left as it was but for the control pod', () => {
    expect(component.kind).toBe('Component');
    expect(objects.filter((o) => !BASE_OBJECTS.some((b) => b.kind === o.kind && b.metadata.name === o.metadata.name)).map((o) => o.kind).sort()).toEqual(['Deployment', 'Service']);
    expect(vllm).toBeDefined();
    expect(patched).toBe(1);
    const service = objects.find((o): o is Service => o.kind === 'Service' && o.metadata.name === 'visualthinker-vllm')!;
    expect(service.spec.type ?? 'ClusterIP').toBe('ClusterIP');
    expect(deployments.filter((d) => matches(service.spec.selector, podLabels(d)))).toEqual([vllm]);
    expect(matches(vllm.spec.selector.matchLabels, podLabels(vllm))).toBe(true);
    // Neither the vLLM selectors nor the base's reach the other's pods (nor does the gpu component's patch).
    for (const d of DEPLOYMENTS) {
      expect(matches(vllm.spec.selector.matchLabels, podLabels(d))).toBe(false);
      expect(matches(d.spec.selector.matchLabels, podLabels(vllm))).toBe(false);
    }
    for (const s of SERVICES) expect(matches(s.spec.selector, podLabels(vllm))).toBe(false);
    const gpuDir = join(K8S, 'gpu');
    const withGpu = applyComponent(objects, kustomizationAt(gpuDir), gpuDir).objects.find((o) => o.metadata.name === vllm.metadata.name) as Deployment;
    expect(withGpu).toEqual(vllm);
    const port = service.spec.ports[0];
    expect(container.ports?.find((p) => p.name === port.targetPort)?.containerPort).toBe(port.port);
    // Only the control pod changed, and only its REMOTE_MODELS.
    for (const d of DEPLOYMENTS) {
      const after = deployments.find((x) => x.metadata.name === d.metadata.name)!;
      if (d !== stateOwner()) expect(after).toEqual(d);
    }
    const before = serverContainer(stateOwner()).env!;
    const after = serverContainer(control()).env!;
    expect(after.map((e) => e.name)).toEqual(before.map((e) => e.name));
    expect(after.filter((e) => e.name !== 'REMOTE_MODELS')).toEqual(before.filter((e) => e.name !== 'REMOTE_MODELS'));
  });

  test("the control pod's REMOTE_MODELS keeps the inference tier and names the vLLM Service with the id vLLM serves", () => {
    const before = parseRemoteModels(envOf(serverContainer(stateOwner()), 'REMOTE_MODELS')!.value!);
    const config = loadConfig(resolvedEnv(serverContainer(control())));
    expect(config.remoteModels.slice(0, before.length)).toEqual(before);
    const added = config.remoteModels.slice(before.length);
    expect(added).toHaveLength(1);
    expect(existsSync(join(REPO_ROOT, 'models', added[0].name))).toBe(false);
    const service = objects.find((o): o is Service => o.kind === 'Service' && o.metadata.name === 'visualthinker-vllm')!;
    for (const replica of added[0].replicas) {
      const url = new URL(replica.url);
      expect(url.hostname).toBe(service.metadata.name);
      expect(Number(url.port || 80)).toBe(service.spec.ports[0].port);
      expect(url.pathname).toBe('/v1');
      // vLLM lists the model under --served-model-name; the start-up check looks for this id.
      expect(replica.remoteId).toBe(argOf('--served-model-name'));
    }
  });

  test('vLLM serves the checkpoint from the models volume, offline, with the arguments the templates need', () => {
    const controlConfig = loadConfig(resolvedEnv(serverContainer(control())));
    // A pinned vllm/vllm-openai release, started as `vllm serve <folder>`.
    expect(container.image).toMatch(/^vllm\/vllm-openai:v\d+\.\d+\.\d+$/);
    expect(container.command).toEqual(['vllm', 'serve']);
    const folder = container.args![0];
    const mount = container.volumeMounts!.find((m) => folder.startsWith(`${m.mountPath}/`))!;
    expect(mount.readOnly).toBe(true);
    expect(vllm.spec.template.spec.volumes!.find((v) => v.name === mount.name)?.persistentVolumeClaim?.claimName).toBe('visualthinker-models');
    expect(PVCS.map((p) => p.metadata.name)).toContain('visualthinker-models');
    // Nothing is fetched from the Hub at run time.
    expect(envOf(container, 'HF_HUB_OFFLINE')?.value).toBe('1');
    // Room for the longest prompt plus the most new tokens the control pod allows.
    expect(Number(argOf('--max-model-len'))).toBeGreaterThanOrEqual(controlConfig.maxPromptTokens + controlConfig.maxNewTokens);
    // One image per prompt, resized within the bounds of training and of the local engine.
    expect((JSON.parse(argOf('--limit-mm-per-prompt')!) as { image: number }).image).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(argOf('--mm-processor-kwargs')!)).toEqual({ min_pixels: controlConfig.minPixels, max_pixels: controlConfig.maxPixels });
    // The per-request chat template of r1/direct/raw is accepted; sampling defaults are vLLM's.
    expect(container.args).toContain('--trust-request-chat-template');
    expect(argOf('--generation-config')).toBe('vllm');
    expect(Number(argOf('--port'))).toBe(container.ports![0].containerPort);
    // Qwen2-VL needs no remote code, and the reply must come back as one text.
    for (const flag of ['--trust-remote-code', '--reasoning-parser']) expect(container.args!.some((a) => a.startsWith(flag))).toBe(false);
    // Probes on vLLM's /health through the named port; minutes to load before the liveness probe counts.
    for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
      expect(probe?.httpGet).toEqual({ path: '/health', port: 'http' });
    }
    expect((container.startupProbe!.periodSeconds ?? 10) * (container.startupProbe!.failureThreshold ?? 3)).toBeGreaterThanOrEqual(300);
    // A GPU, with CPU and memory requested; the GPU taint tolerated; shared memory in memory.
    expect(container.resources?.limits?.['nvidia.com/gpu']).toBe('1');
    expect(container.resources?.requests?.cpu).toBeDefined();
    expect(container.resources?.requests?.memory).toBeDefined();
    expect(vllm.spec.template.spec.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    const shm = container.volumeMounts!.find((m) => m.mountPath === '/dev/shm');
    expect(vllm.spec.template.spec.volumes!.find((v) => v.name === shm?.name)?.emptyDir?.medium).toBe('Memory');
    expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
    expect(vllm.spec.template.spec.automountServiceAccountToken).toBe(false);
    // The base leaves it to the operator to enable, as the gpu component.
    expect(BASE.components ?? []).toEqual([]);
    expect(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')).toMatch(/^#\s+- vllm$/m);
  });
});

/** Whether git ignores `path` (so a secret written there is never committed). */
function gitIgnored(path: string): boolean {
  try {
    execFileSync('git', ['check-ignore', '-q', path], { cwd: REPO_ROOT, stdio: 'ignore' });
    return true;
  } catch (error) {
    const status = (error as { status?: number }).status;
    if (status === 1) return false;
    // Not a git checkout (or no git): read the pattern from k8s/.gitignore.
    const ignore = readFileSync(join(K8S, '.gitignore'), 'utf8').split('\n').map((l) => l.trim());
    return ignore.includes(`/${relative(K8S, path)}`);
  }
}
