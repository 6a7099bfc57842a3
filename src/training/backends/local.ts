// The local backend: the trainer as a child process of the service,
//   <TRAINER_PYTHON> -m trainer.grpo --config STATE_DIR/jobs/<id>/job.json   (cwd: the repository)
// in its own process group (signals reach its workers too, and a Ctrl-C or SIGTERM meant for the
// service does not), with a minimal environment (no service secrets such as ADMIN_TOKEN, Hugging
// Face kept offline), stdout and stderr appended straight to trainer.log. Because nothing links the
// trainer to the service's pipes, it survives a service restart and can be re-attached by pid.
// When the trainer is the repository's own .venv/bin/python, the backend also owns that
// environment: a job leaving the queue runs `scripts/setup.sh python` when .venv is missing or
// stale (docs/training.md, "Setting up").
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TrainerBackend, TrainerEnvironment, TrainerExit, TrainerHandle, TrainerSpec } from '../backend';

export interface LocalBackendOptions {
  /** The trainer command before `--config <job.json>`, e.g. [TRAINER_PYTHON, '-m', 'trainer.grpo']. */
  command: string[];
  /** Working directory of the trainer (the repository root, where `trainer/` is importable). */
  cwd: string;
  /** Variables added to the trainer's minimal environment (tests, site specifics). */
  env?: Record<string, string>;
  /** The service's environment, source of the passed-through variables (default process.env). */
  parentEnv?: NodeJS.ProcessEnv;
  /** How often a re-attached trainer's pid is checked, in ms. */
  pollMs?: number;
  /**
   * The trainer's environment: `check` exits non-zero when it is missing or stale, `make` makes it
   * (both run in `cwd`). Default, when the command is `<cwd>/.venv/bin/python`: scripts/setup.sh
   * with `--check python` and `python`; null (or another command) means none.
   */
  setup?: { check: string[]; make: string[]; description?: string } | null;
}

/** The setup of the repository's own .venv, when the trainer command is its python. */
export function defaultSetup(command: string[], cwd: string): LocalBackendOptions['setup'] {
  if (command[0] !== join(cwd, '.venv', 'bin', 'python')) return null;
  const script = join(cwd, 'scripts', 'setup.sh');
  return { check: ['bash', script, '--check', 'python'], make: ['bash', script, 'python'], description: "the trainer's Python environment (.venv)" };
}

/** Variables the trainer inherits from the service when they are set. */
const INHERITED = ['PATH', 'HOME', 'LANG', 'TMPDIR', 'CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS', 'TRAINER_THREADS'] as const;

/** Always set: unbuffered output for trainer.log; nothing is downloaded at run time (README). */
export const TRAINER_FIXED_ENV: Readonly<Record<string, string>> = {
  PYTHONUNBUFFERED: '1',
  HF_HUB_OFFLINE: '1',
  TRANSFORMERS_OFFLINE: '1',
  HF_DATASETS_OFFLINE: '1',
};

/**
 * Variables the setup command also inherits: what pip and venv need to reach a package index
 * (mirrors, proxies, certificates) and the setup script's own knobs. Still no service secrets.
 */
const SETUP_INHERITED = /^(PIP_\w+|UV_\w+|TORCH_SPEC|PYTHON|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|XDG_CONFIG_HOME|XDG_CACHE_HOME|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)$/;

/** The setup command's environment: the trainer's allow-list, the index settings, SETUP_VERBOSE=1. */
export function setupEnvironment(parentEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parentEnv)) if (value !== undefined && SETUP_INHERITED.test(name)) env[name] = value;
  const base = trainerEnvironment(parentEnv);
  for (const name of Object.keys(TRAINER_FIXED_ENV)) delete base[name];
  return { ...base, ...env, SETUP_VERBOSE: '1' };
}

/** The trainer's whole environment: an allow-list, never the service's own variables. */
export function trainerEnvironment(parentEnv: NodeJS.ProcessEnv, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of INHERITED) {
    const value = parentEnv[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...TRAINER_FIXED_ENV, ...extra };
}

export class LocalBackend implements TrainerBackend {
  readonly name = 'local' as const;
  readonly environment?: TrainerEnvironment;

  constructor(private readonly options: LocalBackendOptions) {
    if (!options.command.length) throw new Error('the trainer command is empty');
    const setup = options.setup === undefined ? defaultSetup(options.command, options.cwd) : options.setup;
    if (setup) this.environment = new SetupCommand(setup, options.cwd, setupEnvironment(options.parentEnv ?? process.env));
  }

  async start(spec: TrainerSpec): Promise<TrainerHandle> {
    const [program, ...args] = this.options.command;
    const argv = [...args, '--config', spec.jobFile];
    mkdirSync(spec.jobDir, { recursive: true });
    const log = openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      writeSync(log, `[job-manager] ${new Date().toISOString()} attempt ${spec.attempt}: ${[program, ...argv].join(' ')}\n`);
      child = spawn(program, argv, {
        cwd: this.options.cwd,
        env: trainerEnvironment(this.options.parentEnv ?? process.env, this.options.env),
        detached: true,
        stdio: ['ignore', log, log],
      });
    } finally {
      // The child holds its own copy of the descriptor.
      closeSync(log);
    }
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (error) => reject(new Error(`cannot start the trainer (${program}): ${error.message}`)));
    });
    // Later errors (a failed kill) surface through kill()'s own handling.
    child.on('error', () => undefined);
    return new SpawnedTrainer(child);
  }

  async attach(spec: TrainerSpec, ref: string): Promise<TrainerHandle | null> {
    const pid = Number(ref);
    if (!Number.isSafeInteger(pid) || pid <= 1) return null;
    // A pid alone may have been reused since: it must be a live process running this job's file.
    if (!isAlive(pid) || !commandLine(pid)?.includes(spec.jobFile)) return null;
    return new AttachedTrainer(pid, this.options.pollMs ?? 1000);
  }
}

/** The trainer's environment made by a command (scripts/setup.sh python), checked by another. */
class SetupCommand implements TrainerEnvironment {
  readonly description: string;

  constructor(
    private readonly setup: { check: string[]; make: string[]; description?: string },
    private readonly cwd: string,
    private readonly env: Record<string, string>,
  ) {
    this.description = setup.description ?? `the trainer's environment (${setup.make.join(' ')})`;
  }

  needed(): boolean {
    const [program, ...args] = this.setup.check;
    // A check that cannot run at all counts as "needed": make() then fails with the reason.
    const result = spawnSync(program, args, { cwd: this.cwd, env: this.env, stdio: 'ignore', timeout: 30_000 });
    return result.status !== 0;
  }

  make(log: (line: string) => void, signal: AbortSignal): Promise<void> {
    const [program, ...args] = this.setup.make;
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(new Error('stopped'));
      // Its own process group: a stop reaches pip and whatever it started.
      const child = spawn(program, args, { cwd: this.cwd, env: this.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream, crlfDelay: Infinity }).on('line', log);
      const stop = () => signalGroup(child.pid!, 'SIGTERM');
      signal.addEventListener('abort', stop, { once: true });
      child.once('error', (error) => {
        signal.removeEventListener('abort', stop);
        reject(new Error(`cannot run ${this.setup.make.join(' ')}: ${error.message}`));
      });
      child.once('close', (code, sig) => {
        signal.removeEventListener('abort', stop);
        if (code === 0) resolve();
        else reject(new Error(`${this.setup.make.join(' ')} ${sig ? `was killed by ${sig}` : `exited with code ${code}`}`));
      });
    });
  }
}

/** Signal the trainer's process group (it leads one: `detached`), or the process alone. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

class SpawnedTrainer implements TrainerHandle {
  readonly ref: string;
  readonly exited: Promise<TrainerExit>;

  constructor(private readonly child: ChildProcess) {
    this.ref = String(child.pid);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  async kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) signalGroup(this.child.pid!, signal);
  }

  detach(): void {
    // The service may exit while the trainer goes on.
    this.child.unref();
  }
}

class AttachedTrainer implements TrainerHandle {
  readonly ref: string;
  readonly exited: Promise<TrainerExit>;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    pollMs: number,
  ) {
    this.ref = String(pid);
    // Not our child: its exit status went to whoever reaps it, so only its end can be observed.
    this.exited = new Promise((resolve) => {
      this.timer = setInterval(() => {
        if (isAlive(pid)) return;
        clearInterval(this.timer);
        resolve({ code: null, signal: null, detail: 'exit status unknown (the trainer was re-attached after a service restart)' });
      }, pollMs);
      this.timer.unref();
    });
  }

  async kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (isAlive(this.pid)) signalGroup(this.pid, signal);
  }

  detach(): void {
    clearInterval(this.timer);
  }
}

/** Whether the process exists and has not exited (a zombie has exited). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state first.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // Gone between the two checks, or no /proc at all (not Linux: trust kill(0)).
    return !existsSync('/proc/self/stat');
  }
}

/** The process's command line, arguments joined by spaces; null when it cannot be read. */
export function commandLine(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    try {
      return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null;
    } catch {
      return null;
    }
  }
}
