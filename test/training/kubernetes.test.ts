// The Kubernetes backend with a fake API client: the objects it builds from k8s/training-job.yaml,
// how it maps their status to the trainer's end, and a whole job through the manager (the test
// plays the cluster: it writes the job folder files a trainer pod would write on the state PVC).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TrainerSpec } from '../../src/training/backend';
import {
  buildTrainerObject,
  KubeApi,
  KubeObject,
  KubePod,
  KubernetesBackend,
  LABEL_JOB,
  LABEL_RUN,
  PodTemplate,
  podSelector,
  trainerPhase,
  TrainerKind,
} from '../../src/training/backends/kubernetes';
import { REPO_ROOT } from '../helpers/vectors';
import { TrainingFixture, trainingFixture, until } from '../helpers/training';

const TEMPLATE = readFileSync(join(REPO_ROOT, 'k8s', 'training-job.yaml'), 'utf8');
const OPTIONS = { namespace: 'ml', image: 'registry.example/visualthinker:gpu', statePvc: 'vt-state', stateDir: '/state', template: TEMPLATE, cancelGraceMs: 30_000 };

function spec(overrides: Partial<TrainerSpec> = {}): TrainerSpec {
  const jobId = 'train_0123456789abcdef0123';
  return {
    jobId,
    jobDir: `/state/jobs/${jobId}`,
    jobFile: `/state/jobs/${jobId}/job.json`,
    logFile: `/state/jobs/${jobId}/trainer.log`,
    attempt: 1,
    nodes: 1,
    gpusPerNode: 1,
    device: 'auto',
    ...overrides,
  };
}

/** Whether every label of `selector` (a=b,c=d) is on `labels`. */
function selects(selector: string, labels: Record<string, string> = {}): boolean {
  return selector.split(',').every((pair) => {
    const [key, value] = pair.split('=');
    return labels[key] === value;
  });
}

const pods = (object: KubeObject): PodTemplate[] =>
  object.kind === 'Job'
    ? [object.spec.template as PodTemplate]
    : Object.values(object.spec.pytorchReplicaSpecs as Record<string, { template: PodTemplate }>).map((r) => r.template);

describe('Kubernetes trainer objects', () => {
  test('one machine: a batch/v1 Job with one GPU, the state PVC at STATE_DIR, and the trainer command', () => {
    const job = buildTrainerObject(spec(), OPTIONS);
    expect(job.apiVersion).toBe('batch/v1');
    expect(job.kind).toBe('Job');
    expect(job.metadata).toMatchObject({ name: 'vt-train-01234567-1', namespace: 'ml', labels: { [LABEL_JOB]: 'train_0123456789abcdef0123', [LABEL_RUN]: 'vt-train-01234567-1', 'app.kubernetes.io/component': 'trainer' } });
    expect(job.spec).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 259200, ttlSecondsAfterFinished: 86400 });
    const pod = job.spec.template as PodTemplate;
    expect(pod.metadata!.labels).toMatchObject({ [LABEL_JOB]: 'train_0123456789abcdef0123', [LABEL_RUN]: 'vt-train-01234567-1' });
    expect(selects(podSelector('Job', job.metadata.name), pod.metadata!.labels)).toBe(true);
    expect(pod.spec.restartPolicy).toBe('Never');
    expect(pod.spec.terminationGracePeriodSeconds).toBe(40);
    expect(pod.spec.volumes).toContainEqual({ name: 'state', persistentVolumeClaim: { claimName: 'vt-state' } });
    const [container] = pod.spec.containers;
    expect(container.name).toBe('trainer');
    expect(container.image).toBe('registry.example/visualthinker:gpu');
    expect(container.command).toEqual(['python', '-m', 'trainer.grpo', '--config', '/state/jobs/train_0123456789abcdef0123/job.json']);
    expect(container.resources!.limits).toEqual({ memory: '120Gi', 'nvidia.com/gpu': '1' });
    expect(container.volumeMounts).toContainEqual({ name: 'state', mountPath: '/state' });
    const env = Object.fromEntries(container.env!.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', HF_DATASETS_OFFLINE: '1' });
    expect(env.PATH).toMatch(/^\/app\/\.venv\/bin:/);
    expect(Object.keys(env)).not.toContain('ADMIN_TOKEN');
  });

  test('several GPUs on one machine launch through accelerate; device=cpu asks for no GPU', () => {
    const multi = buildTrainerObject(spec({ gpusPerNode: 4 }), OPTIONS);
    const container = (multi.spec.template as PodTemplate).spec.containers[0];
    expect(container.command).toEqual(['accelerate', 'launch', '--num_machines', '1', '--num_processes', '4', '-m', 'trainer.grpo', '--config', '/state/jobs/train_0123456789abcdef0123/job.json']);
    expect(container.resources!.limits!['nvidia.com/gpu']).toBe('4');
    const cpu = buildTrainerObject(spec({ device: 'cpu' }), OPTIONS);
    expect((cpu.spec.template as PodTemplate).spec.containers[0].resources!.limits).not.toHaveProperty('nvidia.com/gpu');
  });

  test('several machines: a Kubeflow PyTorchJob, one master and N-1 workers, accelerate across machines', () => {
    const job = buildTrainerObject(spec({ nodes: 3, gpusPerNode: 2, attempt: 2 }), OPTIONS);
    expect(job.apiVersion).toBe('kubeflow.org/v1');
    expect(job.kind).toBe('PyTorchJob');
    expect(job.metadata.name).toBe('vt-train-01234567-2');
    expect(job.spec.runPolicy).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 259200, ttlSecondsAfterFinished: 86400 });
    const replicas = job.spec.pytorchReplicaSpecs as Record<string, { replicas: number; restartPolicy: string; template: PodTemplate }>;
    expect(replicas.Master.replicas).toBe(1);
    expect(replicas.Worker.replicas).toBe(2);
    for (const pod of pods(job)) {
      const [container] = pod.spec.containers;
      expect(container.name).toBe('pytorch');
      expect(container.image).toBe(OPTIONS.image);
      expect(container.resources!.limits!['nvidia.com/gpu']).toBe('2');
      expect(container.command!.slice(0, 2)).toEqual(['/bin/sh', '-c']);
      expect(container.command![2]).toBe(
        'exec accelerate launch --num_machines 3 --num_processes 6 --machine_rank "$RANK" --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" -m trainer.grpo --config \'/state/jobs/train_0123456789abcdef0123/job.json\'',
      );
      expect(container.volumeMounts).toContainEqual({ name: 'state', mountPath: '/state' });
      expect(pod.spec.volumes).toContainEqual({ name: 'state', persistentVolumeClaim: { claimName: 'vt-state' } });
      expect(pod.metadata!.labels).toMatchObject({ [LABEL_JOB]: 'train_0123456789abcdef0123', [LABEL_RUN]: job.metadata.name });
    }
    expect(selects(podSelector('PyTorchJob', job.metadata.name), { ...replicas.Master.template.metadata!.labels, 'training.kubeflow.org/replica-type': 'master' })).toBe(true);
  });

  test('a template without the needed kind is an error naming it', () => {
    expect(() => buildTrainerObject(spec({ nodes: 2 }), { ...OPTIONS, template: TEMPLATE.split('---')[0] })).toThrow(/no PyTorchJob document/);
  });

  test.each([
    ['no object', 'deleted', null],
    ['a Job without active pods', 'pending', { kind: 'Job', status: {} }],
    ['a Job with an active pod', 'running', { kind: 'Job', status: { active: 1 } }],
    ['a complete Job', 'succeeded', { kind: 'Job', status: { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] } }],
    ['a failed Job', 'failed', { kind: 'Job', status: { failed: 1, conditions: [{ type: 'Failed', status: 'True', reason: 'DeadlineExceeded' }] } }],
    ['a created PyTorchJob', 'pending', { kind: 'PyTorchJob', status: { conditions: [{ type: 'Created', status: 'True' }] } }],
    ['a running PyTorchJob', 'running', { kind: 'PyTorchJob', status: { conditions: [{ type: 'Created', status: 'True' }, { type: 'Running', status: 'True' }] } }],
    ['a succeeded PyTorchJob', 'succeeded', { kind: 'PyTorchJob', status: { conditions: [{ type: 'Running', status: 'False' }, { type: 'Succeeded', status: 'True' }] } }],
    ['a failed PyTorchJob', 'failed', { kind: 'PyTorchJob', status: { conditions: [{ type: 'Failed', status: 'True', reason: 'PyTorchJobFailed', message: 'master failed' }] } }],
  ])('%s: %s', (_name, phase, object) => {
    const full = object && ({ apiVersion: 'x', metadata: { name: 'n' }, spec: {}, ...object } as KubeObject);
    expect(trainerPhase(full).phase).toBe(phase);
  });

  test('a failure carries its reason', () => {
    const object = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'n' }, spec: {}, status: { conditions: [{ type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' }] } };
    expect(trainerPhase(object)).toEqual({ phase: 'failed', detail: 'DeadlineExceeded: Job was active longer than specified deadline' });
  });
});

/** An API server in memory: objects by name, pods the test adds, calls recorded. */
class FakeKubeApi implements KubeApi {
  readonly objects = new Map<string, KubeObject>();
  readonly pods = new Map<string, KubePod[]>();
  readonly calls: string[] = [];
  /** What deleting does: remove the object at once, or leave it terminating (a stuck pod). */
  deleteRemoves = true;
  readonly logLines = new Map<string, string>();

  async create(namespace: string, object: KubeObject) {
    this.calls.push(`create ${namespace} ${object.kind} ${object.metadata.name}`);
    this.objects.set(object.metadata.name, structuredClone(object));
  }
  async read(_namespace: string, kind: TrainerKind, name: string) {
    const object = this.objects.get(name);
    return object && object.kind === kind ? structuredClone(object) : null;
  }
  async delete(namespace: string, kind: TrainerKind, name: string) {
    this.calls.push(`delete ${namespace} ${kind} ${name}`);
    const object = this.objects.get(name);
    if (!object) return;
    if (this.deleteRemoves) this.objects.delete(name);
    else object.metadata.deletionTimestamp = new Date().toISOString();
  }
  async listPods(_namespace: string, selector: string) {
    const name = /visualthinker\.io\/run=([^,]+)/.exec(selector)![1];
    return this.pods.get(name) ?? [];
  }
  async deletePods(namespace: string, selector: string, grace: number) {
    this.calls.push(`deletePods ${namespace} ${selector} grace=${grace}`);
    const name = /visualthinker\.io\/run=([^,]+)/.exec(selector)![1];
    this.pods.delete(name);
    this.objects.delete(name);
  }
  async followLog(_namespace: string, pod: string, container: string, out: Writable) {
    this.calls.push(`log ${pod} ${container}`);
    out.end(this.logLines.get(pod) ?? '');
    return () => undefined;
  }
  /** Set an object's status (the cluster moving on). */
  status(name: string, status: KubeObject['status']) {
    this.objects.get(name)!.status = status;
  }
  only(): KubeObject {
    expect(this.objects.size).toBe(1);
    return [...this.objects.values()][0];
  }
}

describe('KubernetesBackend through the job manager', () => {
  let fx: TrainingFixture;
  let api: FakeKubeApi;
  const backend = (cancelGraceMs = 5000) => new KubernetesBackend({ ...OPTIONS, api, stateDir: fx.stateDir, cancelGraceMs, pollMs: 10 });
  beforeEach(() => {
    fx = trainingFixture();
    api = new FakeKubeApi();
  });
  afterEach(async () => {
    await fx.cleanup();
  });

  test('create -> pending -> running (log streamed into trainer.log) -> Complete with result.json -> succeeded', async () => {
    const manager = fx.manager({ backend: backend() });
    const job = manager.create({ steps: 2 });
    await until(() => api.objects.size === 1, 5000, 'the Job');
    const object = api.only();
    expect(api.calls[0]).toBe(`create ml Job ${object.metadata.name}`);
    expect(fx.store.get(job.id)).toMatchObject({ status: 'running', backend: 'kubernetes', backend_ref: object.metadata.name });
    expect((object.spec.template as PodTemplate).spec.containers[0].command).toEqual(['python', '-m', 'trainer.grpo', '--config', join(job.job_dir, 'job.json')]);

    // The pod runs and writes to the shared job folder.
    api.status(object.metadata.name, { active: 1 });
    api.pods.set(object.metadata.name, [{ metadata: { name: 'pod-a' }, status: { phase: 'Running' } }]);
    api.logLines.set('pod-a', '[grpo] step 1/2 reward 0.5\n[grpo] step 2/2 reward 0.7\n');
    writeFileSync(join(job.job_dir, 'metrics.jsonl'), `${JSON.stringify({ step: 1, reward: 0.5 })}\n${JSON.stringify({ step: 2, reward: 0.7 })}\n`);
    await until(() => manager.get(job.id)!.progress.step === 2, 5000, 'metrics');
    writeFileSync(join(job.job_dir, 'result.json'), JSON.stringify({ status: 'succeeded', steps: 2 }));
    api.status(object.metadata.name, { succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] });
    const done = await manager.wait(job.id);
    expect(done).toMatchObject({ status: 'succeeded', backend: 'kubernetes', model_name: expect.stringMatching(/^grpo-/) });
    expect(api.calls).toContain(`log pod-a trainer`);
    const log = readFileSync(join(job.job_dir, 'trainer.log'), 'utf8');
    expect(log).toContain(`Job ml/${object.metadata.name} (batch/v1)`);
    expect(log).toContain('[grpo] step 2/2 reward 0.7');
  });

  test('a failed Job fails the job with the pod exit code, the condition and the log tail', async () => {
    const manager = fx.manager({ backend: backend() });
    const job = manager.create({});
    await until(() => api.objects.size === 1);
    const name = api.only().metadata.name;
    api.pods.set(name, [{ metadata: { name: 'pod-b' }, status: { phase: 'Failed', containerStatuses: [{ name: 'trainer', state: { terminated: { exitCode: 137, reason: 'OOMKilled' } } }] } }]);
    api.logLines.set('pod-b', 'RuntimeError: CUDA out of memory\n');
    api.status(name, { failed: 1, conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' }] });
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toContain('the trainer exited with code 137: Kubernetes Job');
    expect(done!.error).toContain('BackoffLimitExceeded: Job has reached the specified backoff limit');
    expect(done!.error).toContain('RuntimeError: CUDA out of memory');
  });

  test('cancel deletes the Job (foreground); once it is gone the job is cancelled', async () => {
    const manager = fx.manager({ backend: backend() });
    const job = manager.create({});
    await until(() => api.objects.size === 1);
    const name = api.only().metadata.name;
    api.status(name, { active: 1 });
    manager.cancel(job.id);
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('cancelled');
    expect(api.calls).toContain(`delete ml Job ${name}`);
    expect(api.calls.some((c) => c.startsWith('deletePods'))).toBe(false);
  });

  test('pods still there after the grace period are removed without grace', async () => {
    api.deleteRemoves = false;
    const manager = fx.manager({ backend: backend(200), cancelGraceMs: 200 });
    const job = manager.create({});
    await until(() => api.objects.size === 1);
    const name = api.only().metadata.name;
    api.status(name, { active: 1 });
    manager.cancel(job.id);
    await new Promise((r) => setTimeout(r, 100));
    expect(manager.get(job.id)!.status).toBe('running');
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('cancelled');
    expect(api.calls).toContain(`deletePods ml visualthinker.io/run=${name} grace=0`);
  });

  test('a Job deleted by someone else fails the job', async () => {
    const manager = fx.manager({ backend: backend() });
    const job = manager.create({});
    await until(() => api.objects.size === 1);
    api.objects.clear();
    const done = await manager.wait(job.id);
    expect(done!.status).toBe('failed');
    expect(done!.error).toMatch(/^the trainer ended: the Kubernetes Job vt-train-\w+-1 was deleted/);
  });

  test('several machines go to a PyTorchJob whose master log is followed', async () => {
    const manager = fx.manager({ backend: backend() });
    const job = manager.create({ nodes: 2, gpus: 8 });
    await until(() => api.objects.size === 1);
    const object = api.only();
    expect(object).toMatchObject({ apiVersion: 'kubeflow.org/v1', kind: 'PyTorchJob' });
    api.pods.set(object.metadata.name, [{ metadata: { name: 'master-0' }, status: { phase: 'Running' } }]);
    api.status(object.metadata.name, { conditions: [{ type: 'Running', status: 'True' }] });
    await until(() => api.calls.includes('log master-0 pytorch'), 5000, 'the master log');
    writeFileSync(join(job.job_dir, 'result.json'), JSON.stringify({ status: 'succeeded' }));
    api.status(object.metadata.name, { conditions: [{ type: 'Succeeded', status: 'True' }] });
    expect((await manager.wait(job.id))!.status).toBe('succeeded');
  });

  test('recover() re-attaches to a Job that still exists and resumes one that is gone', async () => {
    const first = fx.manager({ backend: backend() });
    const kept = first.create({});
    await until(() => api.objects.size === 1);
    const keptName = api.only().metadata.name;
    api.status(keptName, { active: 1 });
    await first.close();
    // A second job whose Job object vanished while the service was down, after a checkpoint.
    const second = fx.manager({ backend: backend(), maxConcurrent: 2 });
    const lost = second.create({});
    await until(() => api.objects.size === 2);
    const lostName = [...api.objects.keys()].find((n) => n !== keptName)!;
    await second.close();
    api.objects.delete(lostName);
    mkdirSync(join(lost.job_dir, 'checkpoints', 'checkpoint-5'), { recursive: true });
    writeFileSync(join(lost.job_dir, 'checkpoints', 'checkpoint-5', 'trainer_state.json'), '{}');

    const third = fx.manager({ backend: backend(), maxConcurrent: 2 });
    await third.recover();
    await until(() => api.objects.size === 2, 5000, 'the resumed Job');
    expect(api.objects.has(keptName)).toBe(true);
    expect([...api.objects.keys()]).toContain(lostName.replace(/-1$/, '-2'));
    expect(third.get(lost.id)).toMatchObject({ status: 'running', attempts: 2 });
    writeFileSync(join(kept.job_dir, 'result.json'), JSON.stringify({ status: 'succeeded' }));
    api.status(keptName, { conditions: [{ type: 'Complete', status: 'True' }] });
    expect((await third.wait(kept.id))!.status).toBe('succeeded');
  });
});
