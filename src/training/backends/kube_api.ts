// KubeApi on @kubernetes/client-node: batch/v1 Jobs through BatchV1Api, Kubeflow PyTorchJobs
// through CustomObjectsApi, pods and their logs through CoreV1Api and Log. Credentials come from
// the in-cluster service account or KUBECONFIG (KubeConfig.loadFromDefault).
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type * as K8s from '@kubernetes/client-node';
import type { KubeApi, KubeObject, KubePod, TrainerKind } from './kubernetes';

const PYTORCHJOBS = { group: 'kubeflow.org', version: 'v1', plural: 'pytorchjobs' } as const;
const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** K8S_NAMESPACE, else the namespace the service itself runs in, else "default". */
export function defaultNamespace(configured?: string): string {
  if (configured) return configured;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim() || 'default';
  } catch {
    return 'default';
  }
}

const isNotFound = (error: unknown) => (error as { code?: number }).code === 404;

export function kubeApiFromDefaultConfig(): KubeApi {
  // An ES module: Node 20.19+ loads it through require(). Loaded here only, when the Kubernetes
  // backend is configured, so nothing else (tests included) pays for it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const k8s = require('@kubernetes/client-node') as typeof K8s;
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const logs = new k8s.Log(kc);

  return {
    async create(namespace: string, object: KubeObject) {
      if (object.kind === 'Job') await batch.createNamespacedJob({ namespace, body: object as unknown as K8s.V1Job });
      else await custom.createNamespacedCustomObject({ ...PYTORCHJOBS, namespace, body: object });
    },
    async read(namespace: string, kind: TrainerKind, name: string) {
      try {
        const object = kind === 'Job' ? await batch.readNamespacedJob({ name, namespace }) : await custom.getNamespacedCustomObject({ ...PYTORCHJOBS, namespace, name });
        return object as unknown as KubeObject;
      } catch (error) {
        if (isNotFound(error)) return null;
        throw error;
      }
    },
    async delete(namespace: string, kind: TrainerKind, name: string) {
      try {
        if (kind === 'Job') await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Foreground' });
        else await custom.deleteNamespacedCustomObject({ ...PYTORCHJOBS, namespace, name, propagationPolicy: 'Foreground' });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    },
    async listPods(namespace: string, labelSelector: string) {
      return (await core.listNamespacedPod({ namespace, labelSelector })).items as unknown as KubePod[];
    },
    async deletePods(namespace: string, labelSelector: string, gracePeriodSeconds: number) {
      await core.deleteCollectionNamespacedPod({ namespace, labelSelector, gracePeriodSeconds });
    },
    async followLog(namespace: string, pod: string, container: string, out: Writable, options: { sinceTime?: string }) {
      const controller = await logs.log(namespace, pod, container, out, { follow: true, ...(options.sinceTime ? { sinceTime: options.sinceTime } : {}) });
      return () => controller.abort();
    },
  };
}
