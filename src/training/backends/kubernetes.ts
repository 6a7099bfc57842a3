// The Kubernetes backend (TRAIN_BACKEND=kubernetes): each trainer start is one object built from
// k8s/training-job.yaml — a batch/v1 Job on one GPU machine, or a Kubeflow PyTorchJob
// (kubeflow.org/v1) when the request asks for several machines. The job folder lives on the
// state PVC, mounted in the trainer pods at the service's STATE_DIR, so job.json, metrics.jsonl,
// checkpoints and result.json are shared files exactly as in local mode; the pod's log is
// streamed into trainer.log. The object's status is polled and mapped to the trainer's end.
// Talking to the API server goes through the narrow KubeApi interface (kube_api.ts implements it
// with @kubernetes/client-node; tests inject a fake).
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { loadAll } from 'js-yaml';
import type { TrainerBackend, TrainerExit, TrainerHandle, TrainerSpec } from '../backend';
import { TRAINER_FIXED_ENV } from './local';

export type TrainerKind = 'Job' | 'PyTorchJob';

type Labels = Record<string, string>;
interface EnvVar {
  name: string;
  value?: string;
  [key: string]: unknown;
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
  volumeMounts?: { name: string; mountPath: string; [key: string]: unknown }[];
  [key: string]: unknown;
}
export interface PodTemplate {
  metadata?: { labels?: Labels; [key: string]: unknown };
  spec: {
    containers: Container[];
    volumes?: { name: string; [key: string]: unknown }[];
    restartPolicy?: string;
    terminationGracePeriodSeconds?: number;
    [key: string]: unknown;
  };
}
interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string | Date;
}
/** The parts of a Job or PyTorchJob this backend reads and writes. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels; deletionTimestamp?: string | Date; [key: string]: unknown };
  spec: Record<string, unknown>;
  status?: { conditions?: Condition[]; active?: number; succeeded?: number; failed?: number; [key: string]: unknown };
}
export interface KubePod {
  metadata?: { name?: string; labels?: Labels };
  status?: {
    phase?: string;
    containerStatuses?: { name: string; state?: { terminated?: { exitCode: number; reason?: string; signal?: number } } }[];
  };
}

/** What the backend needs from the API server. */
export interface KubeApi {
  create(namespace: string, object: KubeObject): Promise<void>;
  /** The object, or null when it does not exist. */
  read(namespace: string, kind: TrainerKind, name: string): Promise<KubeObject | null>;
  /** Foreground deletion: the object stays, marked, until its pods are gone. Absent is fine. */
  delete(namespace: string, kind: TrainerKind, name: string): Promise<void>;
  listPods(namespace: string, labelSelector: string): Promise<KubePod[]>;
  deletePods(namespace: string, labelSelector: string, gracePeriodSeconds: number): Promise<void>;
  /** Stream a container's log into `out` (ended with the log); the function stops it early. */
  followLog(namespace: string, pod: string, container: string, out: Writable, options: { sinceTime?: string }): Promise<() => void>;
}

export interface KubernetesBackendOptions {
  api: KubeApi;
  namespace: string;
  /** The trainer image (K8S_TRAINER_IMAGE). */
  image: string;
  /** The PVC holding STATE_DIR (K8S_STATE_PVC), mounted at `stateDir` in the pods. */
  statePvc: string;
  stateDir: string;
  /** The text of k8s/training-job.yaml. */
  template: string;
  /** TRAIN_CANCEL_GRACE_MS: pods get this long (plus a margin) to checkpoint after SIGTERM. */
  cancelGraceMs: number;
  /** Status polling interval in ms. */
  pollMs?: number;
  /** Variables added to the trainer container's environment. */
  env?: Record<string, string>;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export const LABEL_JOB = 'visualthinker.io/job-id';
export const LABEL_RUN = 'visualthinker.io/run';
const MASTER_LABEL = 'training.kubeflow.org/replica-type';
const GPU = 'nvidia.com/gpu';
const KUBEFLOW_API = 'kubeflow.org/v1';
const CONTAINER: Record<TrainerKind, string> = { Job: 'trainer', PyTorchJob: 'pytorch' };

export function trainerKind(spec: Pick<TrainerSpec, 'nodes'>): TrainerKind {
  return spec.nodes > 1 ? 'PyTorchJob' : 'Job';
}

/** A DNS-1123 name: vt-train-<first 8 of the id's hex>-<attempt>. */
export function trainerObjectName(spec: Pick<TrainerSpec, 'jobId' | 'attempt'>): string {
  const short = spec.jobId.replace(/^train_/, '').toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8) || 'job';
  return `vt-train-${short}-${spec.attempt}`;
}

/** Pods of one trainer start (for a PyTorchJob, its master: the one whose log we keep). */
export function podSelector(kind: TrainerKind, name: string): string {
  return kind === 'PyTorchJob' ? `${LABEL_RUN}=${name},${MASTER_LABEL}=master` : `${LABEL_RUN}=${name}`;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The trainer's command line inside the pod (docs/training.md; accelerate for several GPUs). */
export function trainerCommand(spec: TrainerSpec): string[] {
  const gpus = spec.device === 'cpu' ? 0 : spec.gpusPerNode;
  if (spec.nodes > 1) {
    // The training operator gives each replica MASTER_ADDR, MASTER_PORT and RANK (its machine rank).
    const launch = [
      'exec accelerate launch',
      `--num_machines ${spec.nodes}`,
      `--num_processes ${spec.nodes * Math.max(1, gpus)}`,
      '--machine_rank "$RANK"',
      '--main_process_ip "$MASTER_ADDR"',
      '--main_process_port "$MASTER_PORT"',
      `-m trainer.grpo --config ${shellQuote(spec.jobFile)}`,
    ];
    return ['/bin/sh', '-c', launch.join(' ')];
  }
  if (gpus > 1) return ['accelerate', 'launch', '--num_machines', '1', '--num_processes', String(gpus), '-m', 'trainer.grpo', '--config', spec.jobFile];
  return ['python', '-m', 'trainer.grpo', '--config', spec.jobFile];
}

/** The object for one trainer start: the template of its kind with the job's parts filled in. */
export function buildTrainerObject(spec: TrainerSpec, options: Omit<KubernetesBackendOptions, 'api' | 'pollMs' | 'log'>): KubeObject {
  const kind = trainerKind(spec);
  const documents = (loadAll(options.template) as KubeObject[]).filter(Boolean);
  const template = documents.find((d) => d.kind === kind && (kind === 'Job' ? d.apiVersion === 'batch/v1' : d.apiVersion === KUBEFLOW_API));
  if (!template) throw new Error(`k8s/training-job.yaml has no ${kind} document`);
  const object = structuredClone(template);
  const name = trainerObjectName(spec);
  const labels: Labels = { [LABEL_JOB]: spec.jobId, [LABEL_RUN]: name };
  object.metadata = { ...object.metadata, name, namespace: options.namespace, labels: { ...object.metadata?.labels, ...labels } };
  const fill = (pod: PodTemplate | undefined) => {
    if (!pod?.spec?.containers?.length) throw new Error(`k8s/training-job.yaml: the ${kind} has a pod template without containers`);
    fillPod(pod, kind, labels, spec, options);
  };
  if (kind === 'Job') {
    object.spec = { ...object.spec, backoffLimit: 0 };
    fill(object.spec.template as PodTemplate);
  } else {
    const runPolicy = (object.spec.runPolicy ?? {}) as Record<string, unknown>;
    object.spec.runPolicy = { ...runPolicy, backoffLimit: 0 };
    const replicas = (object.spec.pytorchReplicaSpecs ?? {}) as Record<string, { replicas?: number; restartPolicy?: string; template: PodTemplate }>;
    const master = replicas.Master;
    const worker = replicas.Worker ?? (master && structuredClone(master));
    if (!master || !worker) throw new Error('k8s/training-job.yaml: the PyTorchJob needs a Master replica spec');
    master.replicas = 1;
    worker.replicas = spec.nodes - 1;
    for (const replica of [master, worker]) {
      replica.restartPolicy = 'Never';
      fill(replica.template);
    }
    object.spec.pytorchReplicaSpecs = { ...replicas, Master: master, Worker: worker };
  }
  return object;
}

function fillPod(pod: PodTemplate, kind: TrainerKind, labels: Labels, spec: TrainerSpec, options: Omit<KubernetesBackendOptions, 'api' | 'pollMs' | 'log'>) {
  pod.metadata = { ...pod.metadata, labels: { ...pod.metadata?.labels, ...labels } };
  pod.spec.restartPolicy = 'Never';
  // The kubelet's own SIGKILL comes after ours (TRAIN_CANCEL_GRACE_MS), never before.
  pod.spec.terminationGracePeriodSeconds = Math.ceil(options.cancelGraceMs / 1000) + 10;
  pod.spec.volumes = [...(pod.spec.volumes ?? []).filter((v) => v.name !== 'state'), { name: 'state', persistentVolumeClaim: { claimName: options.statePvc } }];
  const container = pod.spec.containers.find((c) => c.name === CONTAINER[kind]) ?? pod.spec.containers[0];
  container.name = CONTAINER[kind];
  container.image = options.image;
  container.command = trainerCommand(spec);
  delete container.args;
  const ours: Record<string, string> = { ...TRAINER_FIXED_ENV, ...options.env };
  container.env = [...(container.env ?? []).filter((e) => !(e.name in ours)), ...Object.entries(ours).map(([name, value]) => ({ name, value }))];
  container.volumeMounts = [...(container.volumeMounts ?? []).filter((m) => m.name !== 'state' && m.mountPath !== options.stateDir), { name: 'state', mountPath: options.stateDir }];
  const limits = { ...container.resources?.limits };
  delete limits[GPU];
  if (spec.device !== 'cpu') limits[GPU] = String(spec.gpusPerNode);
  container.resources = { ...container.resources, limits };
}

export type TrainerPhase = 'pending' | 'running' | 'succeeded' | 'failed' | 'deleted';

/** Where a trainer object stands, from its status (batch/v1 Job or PyTorchJob conditions). */
export function trainerPhase(object: KubeObject | null): { phase: TrainerPhase; detail?: string } {
  if (!object) return { phase: 'deleted' };
  const conditions = (object.status?.conditions ?? []).filter((c) => c.status === 'True');
  const describe = (c: Condition) => [c.reason, c.message].filter(Boolean).join(': ') || c.type;
  const failed = conditions.find((c) => c.type === 'Failed');
  if (failed) return { phase: 'failed', detail: describe(failed) };
  // batch/v1 reports Complete (and SuccessCriteriaMet since 1.31); the training operator Succeeded.
  if (conditions.some((c) => c.type === 'Complete' || c.type === 'Succeeded' || c.type === 'SuccessCriteriaMet')) return { phase: 'succeeded' };
  if (object.kind === 'Job') return { phase: (object.status?.active ?? 0) > 0 ? 'running' : 'pending' };
  return { phase: conditions.some((c) => c.type === 'Running') ? 'running' : 'pending' };
}

export class KubernetesBackend implements TrainerBackend {
  readonly name = 'kubernetes' as const;

  constructor(private readonly options: KubernetesBackendOptions) {}

  async start(spec: TrainerSpec): Promise<TrainerHandle> {
    const object = buildTrainerObject(spec, this.options);
    const log = createWriteStream(spec.logFile, { flags: 'a' });
    log.end(`[job-manager] ${new Date().toISOString()} attempt ${spec.attempt}: ${object.kind} ${this.options.namespace}/${object.metadata.name} (${object.apiVersion})\n`);
    await this.options.api.create(this.options.namespace, object);
    return new KubeTrainer(this.options, spec, trainerKind(spec), object.metadata.name);
  }

  async attach(spec: TrainerSpec, ref: string): Promise<TrainerHandle | null> {
    const kind = trainerKind(spec);
    const object = await this.options.api.read(this.options.namespace, kind, ref);
    if (!object) return null;
    // Only the log written from now on: earlier lines are in trainer.log already.
    return new KubeTrainer(this.options, spec, kind, ref, new Date().toISOString());
  }
}

class KubeTrainer implements TrainerHandle {
  readonly exited: Promise<TrainerExit>;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private polling = false;
  private logStop?: () => void;
  private logDone?: Promise<void>;

  constructor(
    private readonly options: KubernetesBackendOptions,
    private readonly spec: TrainerSpec,
    private readonly kind: TrainerKind,
    readonly ref: string,
    private readonly logSince?: string,
  ) {
    this.exited = new Promise((resolve) => {
      const tick = () => {
        if (this.polling || this.stopped) return;
        this.polling = true;
        this.poll()
          .then((exit) => {
            if (exit && !this.stopped) {
              this.stopped = true;
              clearInterval(this.timer);
              resolve(exit);
            }
          })
          .catch((error) => this.options.log?.('kubernetes status poll failed', { job: spec.jobId, object: ref, error: String(error) }))
          .finally(() => {
            this.polling = false;
          });
      };
      this.timer = setInterval(tick, options.pollMs ?? 2000);
      this.timer.unref();
      tick();
    });
  }

  private get namespace() {
    return this.options.namespace;
  }

  private async poll(): Promise<TrainerExit | null> {
    const object = await this.options.api.read(this.namespace, this.kind, this.ref);
    const { phase, detail } = trainerPhase(object);
    if (phase !== 'pending' && phase !== 'deleted') await this.followLog();
    if (phase === 'pending' || phase === 'running') return null;
    // Let the log stream deliver its last lines before the job is judged.
    if (this.logDone) await Promise.race([this.logDone, new Promise((r) => setTimeout(r, 2000).unref())]);
    this.logStop?.();
    if (phase === 'succeeded') return { code: 0, signal: null };
    if (phase === 'deleted') return { code: null, signal: null, detail: `the Kubernetes ${this.kind} ${this.ref} was deleted` };
    const code = await this.exitCode().catch(() => null);
    return { code: code ?? 1, signal: null, detail: `Kubernetes ${this.kind} ${this.ref} failed${detail ? ` (${detail})` : ''}` };
  }

  /** Start streaming the (master) pod's log into trainer.log once there is a pod to read. */
  private async followLog() {
    if (this.logDone) return;
    const pods = await this.options.api.listPods(this.namespace, podSelector(this.kind, this.ref));
    const pod = pods.find((p) => ['Running', 'Succeeded', 'Failed'].includes(p.status?.phase ?? ''));
    if (!pod?.metadata?.name) return;
    const out = createWriteStream(this.spec.logFile, { flags: 'a' });
    this.logDone = new Promise((resolve) => {
      out.once('finish', () => resolve());
      out.once('close', () => resolve());
      out.once('error', () => resolve());
    });
    try {
      this.logStop = await this.options.api.followLog(this.namespace, pod.metadata.name, CONTAINER[this.kind], out, { sinceTime: this.logSince });
    } catch (error) {
      out.end();
      this.options.log?.('cannot follow the trainer pod log', { job: this.spec.jobId, pod: pod.metadata.name, error: String(error) });
    }
  }

  private async exitCode(): Promise<number | null> {
    const pods = await this.options.api.listPods(this.namespace, podSelector(this.kind, this.ref));
    for (const pod of pods) {
      const state = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER[this.kind])?.state?.terminated;
      if (state) return state.exitCode;
    }
    return null;
  }

  async kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    // Deleting the object terminates its pods: SIGTERM, then the kubelet's SIGKILL after the
    // pods' grace period; a SIGKILL now removes the pods without any grace.
    if (signal === 'SIGKILL') await this.options.api.deletePods(this.namespace, `${LABEL_RUN}=${this.ref}`, 0);
    await this.options.api.delete(this.namespace, this.kind, this.ref);
  }

  detach(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.logStop?.();
  }
}
