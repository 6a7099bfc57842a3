// The Dockerfile read against its conventions (no Docker engine runs here): every path it copies
// from the build context exists and survives .dockerignore, the build stage produces what the
// runtime stages copy and start, the default target is the CPU image, and each deployable stage
// installs production dependencies only, runs as a non-root user under tini with an exec-form
// `node` command and a HEALTHCHECK on /healthz. Then the runtime stage is replayed in a temporary
// folder (the files it copies, the build's output, `npm ci --omit=dev`) and its start command is
// run: ready, a /generate answered, SIGTERM ends it cleanly.
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { promisify } from 'node:util';
import { vectorPng } from '../helpers/service';
import { REPO_ROOT } from '../helpers/vectors';

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  name: string | undefined;
  base: string;
  instructions: Instruction[];
}

/** Instructions grouped by stage: comments dropped, continued lines joined (Docker's rules). */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line)) return; // comments (and parser directives), also inside continuations
    if (!pending.trim()) startLine = index + 1;
    if (/\\\s*$/.test(line)) {
      pending += `${line.replace(/\\\s*$/, '')} `;
      return;
    }
    const whole = (pending + line).trim();
    pending = '';
    if (!whole) return;
    const match = /^(\S+)\s*(.*)$/s.exec(whole)!;
    const instruction = { keyword: match[1].toUpperCase(), args: match[2].trim(), line: startLine };
    if (instruction.keyword === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!from) throw new Error(`line ${startLine}: cannot read FROM ${instruction.args}`);
      stages.push({ base: from[1], name: from[2]?.toLowerCase(), instructions: [] });
    } else if (stages.length) {
      stages.at(-1)!.instructions.push(instruction);
    }
  });
  return stages;
}

/** The parts of a COPY/ADD: its --flags, sources and destination (shell or JSON form). */
function copyParts(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (let m = /^--([\w-]+)(?:=(\S*))?\s+/.exec(rest); m; m = /^--([\w-]+)(?:=(\S*))?\s+/.exec(rest)) {
    flags[m[1]] = m[2] ?? 'true';
    rest = rest.slice(m[0].length);
  }
  const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  return { flags, sources: words.slice(0, -1), dest: words.at(-1)! };
}

/** A JSON (exec form) argument list, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed = JSON.parse(args) as unknown;
  return Array.isArray(parsed) && parsed.every((x) => typeof x === 'string') ? parsed : undefined;
}

/** .dockerignore semantics: `*`, `?`, `**`, `!` exceptions (last match wins), folders cover their contents. */
export function dockerignoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize(l.replace(/^!/, '').trim()).replace(/^\/+/, '').replace(/\/+$/, '');
      const source = pattern
        .split(/(\*\*\/?|\*|\?)/)
        .map((part) => {
          if (part === '**/') return '(?:.*/)?';
          if (part === '**') return '.*';
          if (part === '*') return '[^/]*';
          if (part === '?') return '[^/]';
          return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
        })
        .join('');
      return { negate, regex: new RegExp(`^${source}$`) };
    });
  return (path: string) => {
    const parts = posix.normalize(path).replace(/^\.\/|\/$/g, '').split('/');
    // The path or any folder above it.
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const rule of rules) if (candidates.some((c) => rule.regex.test(c))) excluded = !rule.negate;
    return excluded;
  };
}

/** Every file below `dir` (relative paths). */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? filesUnder(dir, rel) : [rel];
  });
}

const DOCKERFILE = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(DOCKERFILE);
const ignored = existsSync(join(REPO_ROOT, '.dockerignore')) ? dockerignoreMatcher(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')) : () => false;
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { main: string; scripts: Record<string, string> };

const stage = (name: string) => {
  const found = stages.find((s) => s.name === name);
  if (!found) throw new Error(`no stage ${name} in the Dockerfile`);
  return found;
};
const all = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword);
const last = (s: Stage, keyword: string) => all(s, keyword).at(-1);
/** The stage's WORKDIR where an instruction runs (absolute WORKDIRs only, as used here). */
const workdirAt = (s: Stage, at: Instruction) => s.instructions.filter((i) => i.keyword === 'WORKDIR' && i.line < at.line).at(-1)?.args ?? '/';
const contextCopies = (s: Stage) =>
  [...all(s, 'COPY'), ...all(s, 'ADD')].map((i) => ({ instruction: i, ...copyParts(i.args) })).filter((c) => !c.flags.from);

/** Where the build stage writes its output: `npm run build` is tsc with the build tsconfig. */
function buildOutput(): { script: string; project: string; inputs: string[]; outDir: string; rootDir: string } {
  const script = pkg.scripts.build;
  const project = /-p\s+(\S+)/.exec(script)?.[1];
  if (!project) throw new Error(`the build script "${script}" names no tsconfig`);
  const tsconfig = JSON.parse(readFileSync(join(REPO_ROOT, project), 'utf8')) as { extends?: string; compilerOptions: { outDir: string; rootDir: string } };
  const { outDir, rootDir } = tsconfig.compilerOptions;
  const inputs = [project, ...(tsconfig.extends ? [posix.normalize(tsconfig.extends)] : []), rootDir];
  return { script, project, inputs, outDir, rootDir };
}

// The stages a user deploys: the default (CPU) image and the `gpu` target.
const DEPLOYED = ['runtime', 'gpu'] as const;

describe('Dockerfile', () => {
  test('has a build stage and the deployable stages; the default target (the last stage) is the CPU runtime', () => {
    expect(stages.map((s) => s.name)).toEqual(expect.arrayContaining(['build', ...DEPLOYED]));
    // `docker build .` without --target builds the last stage.
    expect(stages.at(-1)!.name).toBe('runtime');
    expect(stage('runtime').base).not.toMatch(/cuda/i);
    expect(stage('gpu').base).toMatch(/^nvidia\/cuda:.*cudnn.*runtime/);
    // Every stage named by --from exists before it.
    for (const [i, s] of stages.entries()) {
      for (const copy of [...all(s, 'COPY'), ...all(s, 'ADD')].map((c) => copyParts(c.args))) {
        if (copy.flags.from) expect(stages.slice(0, i).map((x) => x.name)).toContain(copy.flags.from);
      }
    }
  });

  test('every path copied from the build context exists and is not excluded by .dockerignore', () => {
    const copies = stages.flatMap(contextCopies);
    expect(copies.length).toBeGreaterThan(5);
    for (const { sources, instruction } of copies) {
      for (const source of sources) {
        const where = `line ${instruction.line}: ${source}`;
        expect(source).not.toMatch(/^\/|\.\./); // inside the context
        expect([where, existsSync(join(REPO_ROOT, source))]).toEqual([where, true]);
        expect([where, ignored(source)]).toEqual([where, false]);
        // A folder must bring files: one left empty by .dockerignore would copy nothing.
        if (statSync(join(REPO_ROOT, source)).isDirectory()) {
          expect([where, filesUnder(join(REPO_ROOT, source)).some((f) => !ignored(`${source}/${f}`))]).toEqual([where, true]);
        }
      }
    }
    // Build outputs and local state never enter the context.
    for (const path of ['node_modules/x', 'dist/server/main.js', '.venv/bin/python', 'state/service.db', 'data/sat/x', 'trainer/__pycache__/x.pyc']) {
      expect([path, ignored(path)]).toEqual([path, true]);
    }
    // The matcher itself: exceptions and non-matches.
    const probe = dockerignoreMatcher('a\n**/*.tmp\n!a/keep\n');
    expect([probe('a/b'), probe('x/y/z.tmp'), probe('a/keep'), probe('ab'), probe('src/a')]).toEqual([true, true, false, false, false]);
  });

  test('the build stage compiles the sources the runtime stages copy and start', () => {
    const build = stage('build');
    const { script, inputs, outDir, rootDir } = buildOutput();
    const run = all(build, 'RUN').map((i) => i.args);
    expect(run).toContainEqual(expect.stringMatching(/^npm ci\b/)); // dev dependencies: tsc
    expect(run).toContain('npm run build');
    expect(script).toMatch(/^tsc\b/);
    // Its inputs are copied before the build runs.
    const copied = contextCopies(build).flatMap((c) => c.sources);
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', '.npmrc', ...inputs]));
    const workdir = workdirAt(build, all(build, 'RUN').find((i) => i.args === 'npm run build')!);
    for (const name of DEPLOYED) {
      const s = stage(name);
      const fromBuild = all(s, 'COPY').map((i) => copyParts(i.args)).filter((c) => c.flags.from === 'build');
      expect(fromBuild.map((c) => c.sources)).toEqual([[posix.join(workdir, outDir)]]);
      const cmd = execForm(last(s, 'CMD')!.args)!;
      // The script is the compiled entry point, where the build puts it.
      const entry = cmd[1];
      expect(entry.startsWith(`${outDir}/`)).toBe(true);
      const source = join(REPO_ROOT, rootDir, entry.slice(outDir.length + 1).replace(/\.js$/, '.ts'));
      expect([source, existsSync(source)]).toEqual([source, true]);
      expect(entry).toBe(pkg.main);
      // Copied to where the command looks for it (relative to the same WORKDIR).
      const workdirOfCmd = workdirAt(s, last(s, 'CMD')!);
      expect(posix.join(workdirOfCmd, fromBuild[0].dest)).toBe(posix.join(workdirOfCmd, outDir));
    }
  });

  test.each(DEPLOYED)('stage %s: npm ci --omit=dev, non-root USER, tini ENTRYPOINT, exec-form node CMD, HEALTHCHECK on /healthz', (name) => {
    const s = stage(name);
    const runs = all(s, 'RUN').map((i) => i.args);
    const installs = runs.filter((r) => /\bnpm (ci|install|i)\b/.test(r));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/\bnpm ci\b[^&]*--omit=dev/);
    // The lock file is there before the install.
    const installAt = all(s, 'RUN').find((i) => /\bnpm ci\b/.test(i.args))!;
    const before = contextCopies(s).filter((c) => c.instruction.line < installAt.line).flatMap((c) => c.sources);
    expect(before).toEqual(expect.arrayContaining(['package.json', 'package-lock.json']));

    const user = last(s, 'USER')!.args.split(':')[0];
    expect(['root', '0', '']).not.toContain(user);
    // The node images bring a `node` user; any other is created in the stage before USER.
    if (!(user === 'node' && s.base.startsWith('node:'))) expect(runs.some((r) => new RegExp(`useradd[^&]*\\b${user}\\b`).test(r))).toBe(true);
    // Nothing after USER needs root (no RUN, no root-owned writable folders made later).
    expect(s.instructions.filter((i) => i.line > last(s, 'USER')!.line && i.keyword === 'RUN')).toEqual([]);

    const entrypoint = execForm(last(s, 'ENTRYPOINT')!.args)!;
    expect(entrypoint).toEqual(['/usr/bin/tini', '--']);
    expect(runs.some((r) => /apt-get install[^&]*\btini\b/.test(r))).toBe(true);

    const cmd = execForm(last(s, 'CMD')!.args);
    expect(cmd).toBeDefined(); // exec form: node is PID 2 under tini and gets the signals
    expect(cmd![0]).toBe('node');
    expect(cmd).toHaveLength(2);

    const health = last(s, 'HEALTHCHECK')!.args;
    expect(health).toMatch(/\bCMD\b/);
    expect(health).toContain('/healthz');
    expect(health).toMatch(/--start-period=\d+s/);
    expect(readFileSync(join(REPO_ROOT, 'src', 'server', 'routes', 'health.ts'), 'utf8')).toContain("router.get('/healthz'");

    // The port the service listens on is the one exposed; state and data live outside the image.
    const env = all(s, 'ENV').map((i) => i.args).join(' ');
    const port = /\bPORT=(\d+)/.exec(env)?.[1];
    expect(last(s, 'EXPOSE')!.args).toBe(port);
    expect(env).toMatch(/\bNODE_ENV=production\b/);
    expect(env).toMatch(/\bSTATE_DIR=\/\S+/);
    // The embedded model ships inside; so does the trainer Job template the kubernetes backend reads.
    const copiedPaths = contextCopies(s).flatMap((c) => c.sources);
    expect(copiedPaths).toEqual(expect.arrayContaining(['models', 'k8s/training-job.yaml']));
  });

  test('the gpu stage brings the CUDA provider of onnxruntime-node and the trainer with its Python runtime', () => {
    const s = stage('gpu');
    const runs = all(s, 'RUN').map((i) => i.args).join('\n');
    // The npm ci of the stage sets ONNXRUNTIME_NODE_INSTALL for onnxruntime-node's install script.
    const install = all(s, 'RUN').find((i) => /\bnpm ci\b/.test(i.args))!.args;
    const value = /\bONNXRUNTIME_NODE_INSTALL=(\S+)\s+npm ci\b/.exec(install)?.[1];
    expect(value).toBeDefined();
    // The package's own script, as npm runs it with .npmrc's skip in its config environment: the
    // variable wins, so the script does not skip (false is "skip").
    const npmrc = readFileSync(join(REPO_ROOT, '.npmrc'), 'utf8');
    expect(npmrc).toMatch(/^onnxruntime-node-install=skip$/m);
    const ortScripts = join(REPO_ROOT, 'node_modules', 'onnxruntime-node', 'script');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { parseInstallFlag } = require(join(ortScripts, 'install-utils.js')) as { parseInstallFlag: () => unknown };
    const saved = { variable: process.env.ONNXRUNTIME_NODE_INSTALL, config: process.env.npm_config_onnxruntime_node_install };
    const flagWith = (variable: string | undefined) => {
      if (variable === undefined) delete process.env.ONNXRUNTIME_NODE_INSTALL;
      else process.env.ONNXRUNTIME_NODE_INSTALL = variable;
      process.env.npm_config_onnxruntime_node_install = 'skip';
      try {
        return parseInstallFlag();
      } finally {
        for (const [name, old] of [['ONNXRUNTIME_NODE_INSTALL', saved.variable], ['npm_config_onnxruntime_node_install', saved.config]] as const) {
          if (old === undefined) delete process.env[name];
          else process.env[name] = old;
        }
      }
    };
    expect(flagWith(undefined)).toBe(false); // .npmrc alone: skipped, as in development
    expect(flagWith(value)).not.toBe(false);
    // The value names the linux/x64 manifest, of the base image's CUDA major version.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const metadata = require(join(ortScripts, 'install-metadata.js')) as { requirements: Record<string, string[]>; manifests: Record<string, Record<string, unknown>> };
    expect(metadata.requirements['linux/x64']).toContain(value);
    expect(value).toBe(`cuda${/^nvidia\/cuda:(\d+)\./.exec(stage('gpu').base)![1]}`);
    // After the install, the stage checks every file of that manifest where the addon loads it from.
    const files = Object.keys(metadata.manifests[`linux/x64:${value}`]).map((f) => posix.basename(f));
    expect(files).toEqual(expect.arrayContaining(['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']));
    const checked = /for (\w+) in ([^;]+);\s*do\s+test -s "node_modules\/onnxruntime-node\/bin\/napi-v6\/linux\/x64\/\$(\w+)" \|\| \{[^}]*exit 1; \};\s*done/.exec(install);
    expect(checked).not.toBeNull();
    expect(checked![3]).toBe(checked![1]);
    expect(checked![2].trim().split(/\s+/).sort()).toEqual(files.sort());
    // The check runs after npm ci, and the image build fails with it (&& chain).
    expect(install.indexOf('npm ci')).toBeLessThan(install.indexOf('test -s'));
    expect(install).toMatch(/--omit=dev[^&]*\s&&\s+for \w+ in/);
    expect(readdirSync(join(REPO_ROOT, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64'))).toContain('onnxruntime_binding.node');
    expect(runs).toMatch(/pip install[^\n]*\btorch==[\d.]+[^\n]*-r requirements\.txt[^\n]*-c constraints\.txt/);
    expect(contextCopies(s).flatMap((c) => c.sources)).toEqual(expect.arrayContaining(['trainer', 'requirements.txt', 'constraints.txt']));
    // The CPU image stays free of the trainer and Python.
    expect(contextCopies(stage('runtime')).flatMap((c) => c.sources)).not.toContain('trainer');
  });
});

const exec = promisify(execFile);

function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

describe('the runtime stage, replayed from a clean production install', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'docker-runtime-'));
  });
  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** The COPY instructions of a stage from the build context, into `into` (its WORKDIR). */
  function copyContext(s: Stage, into: string) {
    mkdirSync(into, { recursive: true });
    for (const { sources, dest } of contextCopies(s)) {
      for (const source of sources) {
        const target = dest.endsWith('/') || sources.length > 1 ? join(into, dest, source.split('/').at(-1)!) : join(into, dest);
        mkdirSync(dirname(target), { recursive: true });
        // .dockerignore applies as Docker applies it.
        cpSync(join(REPO_ROOT, source), target, { recursive: true, filter: (from) => !ignored(relative(REPO_ROOT, from) || '.') });
      }
    }
  }

  // The install and the build take ~20 s each on two busy cores; a slow CI machine may take
  // several times that.
  test('npm ci --omit=dev, the build output and the copied files: the CMD serves and stops on SIGTERM', async () => {
    const s = stage('runtime');
    const app = join(dir, 'app');
    // The build stage: its files, its `npm ci` (this checkout's node_modules, from the same lock
    // file), its `npm run build`.
    const build = stage('build');
    const buildDir = join(dir, 'build');
    copyContext(build, buildDir);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(buildDir, 'node_modules'));
    const built = exec('npm', ['run', 'build', '--silent'], { cwd: buildDir });
    copyContext(s, app);
    // RUN npm ci --omit=dev, from the npm cache. Install scripts are skipped: the only one that
    // matters, better-sqlite3's, compiles SQLite (minutes here; the image build does it); its
    // addon is taken from this checkout's install of the same locked version instead.
    const install = exec('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-fund', '--no-audit', '--loglevel=error'], {
      cwd: app,
      env: { ...process.env, NODE_ENV: 'production' },
    });
    await Promise.all([built, install]);
    // COPY --from=build: the build stage's output, to where the runtime stage puts it.
    const buildWorkdir = workdirAt(build, all(build, 'RUN').find((i) => i.args === 'npm run build')!);
    for (const { flags, sources, dest } of all(s, 'COPY').map((i) => copyParts(i.args))) {
      if (flags.from !== 'build') continue;
      for (const source of sources) cpSync(join(buildDir, posix.relative(buildWorkdir, source)), join(app, dest), { recursive: true });
    }
    const lockVersion = (name: string, root: string) => (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    expect(lockVersion('better-sqlite3', app)).toBe(lockVersion('better-sqlite3', REPO_ROOT));
    const addon = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');
    mkdirSync(dirname(join(app, addon)), { recursive: true });
    copyFileSync(join(REPO_ROOT, addon), join(app, addon));
    // Production dependencies only: nothing the lock file marks dev-only is installed.
    const locked = (JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }).packages;
    const devOnly = Object.keys(locked).filter((path) => path && locked[path].dev);
    expect(devOnly).toEqual(expect.arrayContaining(['node_modules/jest', 'node_modules/typescript', 'node_modules/eslint', 'node_modules/@huggingface/transformers']));
    expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);

    const cmd = execForm(last(s, 'CMD')!.args)!;
    const port = await freePort();
    let output = '';
    const proc = spawn(process.execPath, cmd.slice(1), {
      cwd: app,
      // The image's environment (ENV), with folders and the port of this test.
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        NODE_ENV: 'production',
        PORT: String(port),
        HOST: '127.0.0.1',
        STATE_DIR: join(dir, 'state'),
        DATA_DIR: join(dir, 'data'),
        THREADS: '1',
        SHUTDOWN_DELAY_MS: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    proc.stdout!.on('data', (chunk) => (output += String(chunk)));
    proc.stderr!.on('data', (chunk) => (output += String(chunk)));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    let gone = false;
    void exited.then(() => (gone = true));

    const base = `http://127.0.0.1:${port}`;
    for (;;) {
      if (gone) throw new Error(`the service exited before it was ready:\n${output}`);
      const status = await fetch(`${base}/readyz`).then((r) => r.status, () => 0);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    // The dashboard: the static files the build copies, uPlot from the production dependencies.
    for (const path of ['/dashboard', '/dashboard/vendor/uplot/uPlot.iife.min.js']) expect([path, (await fetch(`${base}${path}`)).status]).toEqual([path, 200]);
    const form = new FormData();
    form.append('image', new Blob([vectorPng('56x56')], { type: 'image/png' }), 'in.png');
    form.append('question', 'How many objects are there?');
    form.append('max_new_tokens', '4');
    const generated = await fetch(`${base}/generate`, { method: 'POST', body: form });
    const body = (await generated.json()) as { model: string; text: string; usage: { completion_tokens: number } };
    expect(generated.status).toBe(200);
    // The image serves the embedded trained model (it may end its answer before the 4 tokens).
    expect(body).toMatchObject({ model: 'nano-r1zero', text: expect.any(String) });
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(4);

    proc.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output).toContain('"msg":"stopped"');
  }, 300_000);
});
