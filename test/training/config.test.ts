// The training part of the configuration (src/config.ts): defaults, the Kubernetes backend's
// required variables, and STATE_DIR/models as the last model root.
import { join, resolve } from 'node:path';
import { loadConfig, REPO_ROOT } from '../../src/config';

describe('training configuration', () => {
  test('defaults: local backend, the repository .venv, one job at a time, 30 s grace, no admin token', () => {
    const config = loadConfig({ STATE_DIR: '/srv/state' });
    expect(config).toMatchObject({
      trainBackend: 'local',
      trainerPython: join(REPO_ROOT, '.venv', 'bin', 'python'),
      trainMaxConcurrent: 1,
      trainCancelGraceMs: 30_000,
      adminToken: undefined,
    });
    // Exported models are served, after the shipped ones (they never shadow them).
    expect(config.modelRoots).toEqual([join(REPO_ROOT, 'models'), '/srv/state/models']);
    expect(loadConfig({ MODELS_DIR: '/m', STATE_DIR: '/s' }).modelRoots).toEqual([join(REPO_ROOT, 'models'), '/m', '/s/models']);
  });

  test('TRAINER_PYTHON: a path is made absolute, a bare command is looked up on PATH', () => {
    expect(loadConfig({ TRAINER_PYTHON: 'venv/bin/python' }).trainerPython).toBe(resolve('venv/bin/python'));
    expect(loadConfig({ TRAINER_PYTHON: 'python3' }).trainerPython).toBe('python3');
  });

  test('the Kubernetes backend needs the trainer image and the state PVC', () => {
    expect(() => loadConfig({ TRAIN_BACKEND: 'kubernetes' })).toThrow(/K8S_TRAINER_IMAGE and K8S_STATE_PVC/);
    expect(() => loadConfig({ TRAIN_BACKEND: 'kubernetes', K8S_TRAINER_IMAGE: 'img' })).toThrow(/needs K8S_STATE_PVC/);
    expect(loadConfig({ TRAIN_BACKEND: 'kubernetes', K8S_TRAINER_IMAGE: 'img', K8S_STATE_PVC: 'pvc', K8S_NAMESPACE: 'ml' })).toMatchObject({
      trainBackend: 'kubernetes',
      k8sTrainerImage: 'img',
      k8sStatePvc: 'pvc',
      k8sNamespace: 'ml',
    });
  });

  test.each([
    ['an unknown backend', { TRAIN_BACKEND: 'slurm' }],
    ['no concurrency', { TRAIN_MAX_CONCURRENT: '0' }],
    ['a negative grace', { TRAIN_CANCEL_GRACE_MS: '-1' }],
  ])('%s is a configuration error', (_name, env) => {
    expect(() => loadConfig(env)).toThrow(/invalid configuration/);
  });
});
