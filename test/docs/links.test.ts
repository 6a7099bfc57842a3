// Documentation that stands on its own (issue 13): every document the repository's text files
// point to must be in the repository. Three kinds of pointer are checked, in the files git tracks
// (and new files it does not ignore) under src/ test/ trainer/ scripts/ docs/ k8s/ configs/ bench/
// and at the root, with the extensions below:
// - a path `docs/<...>.md`, anywhere in a file (a comment, a string, a table), from the root;
// - a bare `<name>.md` cited as a document, from the root: `README.md` resolves, `api.md` or
//   `evaluation.md` without their folder do not (a reader cannot tell where they are);
// - a relative markdown link `[text](target)` in a .md file, from that file's folder (anchors and
//   queries dropped; URLs and pure anchors are not checked).
// A target exists when git lists it, or a folder it lists files under. The failure lists
// file:line, the pointer and the target it resolved to.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const SCANNED = /^(?:(?:src|test|trainer|scripts|docs|k8s|configs|bench)\/.+|[^/]+)\.(?:md|ts|py|sh|json|ya?ml|js|mjs|cjs)$/;
// This file's own comments and patterns describe pointers; they are not pointers.
const SELF = 'test/docs/links.test.ts';

// `docs/<...>.md` starting at a path boundary (not the tail of a longer path or URL).
const DOCS_PATH = /(?<![\w./-])docs\/[\w./-]*?[\w-]\.md\b/g;
// A bare file name ending in .md: no folder, not part of a path, a URL, an extension or a shell
// expansion (`"$B/eval-${1}-${2}.md"` names no document).
const BARE_NAME = /(?<![\w./\\$}-])[\w-]+\.md\b(?![\w/-])/g;
// [text](target) with an optional "title"; the target may be wrapped in <>.
const MD_LINK = /\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;

interface Dangling {
  where: string;
  pointer: string;
  resolved: string;
}

function repositoryFiles(): string[] {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, maxBuffer: 64 << 20 });
  // Files deleted from the work tree but still in the index are gone for a reader.
  return [...new Set(listed.toString('utf8').split('\0').filter(Boolean))].filter((f) => existsSync(join(ROOT, f)));
}

function existingPaths(files: string[]): Set<string> {
  const paths = new Set<string>();
  for (const file of files) {
    paths.add(file);
    for (let dir = posix.dirname(file); dir !== '.'; dir = posix.dirname(dir)) paths.add(dir);
  }
  return paths;
}

/** The dangling document pointers in one file's text. */
function danglingIn(file: string, text: string, exists: (path: string) => boolean): Dangling[] {
  const found: Dangling[] = [];
  const markdown = file.endsWith('.md');
  text.split('\n').forEach((line, index) => {
    const where = `${file}:${index + 1}`;
    let rest = line;
    if (markdown) {
      for (const match of line.matchAll(MD_LINK)) {
        const target = match[1];
        if (/^[a-z][\w+.-]*:/i.test(target) || target.startsWith('#')) continue; // URL, mailto:, anchor
        const raw = target.replace(/[#?].*$/, '');
        let path = raw;
        try {
          path = decodeURIComponent(raw);
        } catch {
          // a literal % that is not an escape: keep the target as written
        }
        const resolved = path.startsWith('/') ? path.slice(1) : posix.normalize(posix.join(posix.dirname(file), path));
        if (!exists(resolved.replace(/\/$/, ''))) found.push({ where, pointer: `(${target})`, resolved });
      }
      // Link targets are relative to the file: the bare-name rule does not apply to them.
      rest = line.replace(MD_LINK, (whole) => whole.slice(0, whole.indexOf('](') + 1));
    }
    for (const match of rest.matchAll(DOCS_PATH)) {
      if (!exists(match[0])) found.push({ where, pointer: match[0], resolved: match[0] });
    }
    for (const match of rest.matchAll(BARE_NAME)) {
      if (!exists(match[0])) found.push({ where, pointer: match[0], resolved: match[0] });
    }
  });
  return found;
}

describe('document references', () => {
  test('the checker finds each kind of dangling pointer and accepts the good ones', () => {
    // Fixtures name only documents the repository has; `present` stands for the repository, so a
    // real document left out of it plays a missing one.
    const present = new Set(['README.md', 'docs/api.md', 'docs/method.md', 'docs', 'docs/nano-dynamics.png']);
    const exists = (p: string) => present.has(p);
    const code = ['// see docs/api.md and docs/method.md, "Rewards"', '// evaluation.md 1.2, training.md "A data set", api.md', '# docs/training.md', 'x = "README.md"'].join('\n');
    expect(danglingIn('src/x.ts', code, exists).map((d) => `${d.where} ${d.pointer}`)).toEqual([
      'src/x.ts:2 evaluation.md',
      'src/x.ts:2 training.md',
      'src/x.ts:2 api.md',
      'src/x.ts:3 docs/training.md',
    ]);
    const doc = ['[docs/api.md](api.md), [m](method.md#rewards), [plot](nano-dynamics.png)', '[x](training.md) [u](https://example.com/README.md) [a](#top)', '[r](../README.md) [up](../docs/)'].join('\n');
    expect(danglingIn('docs/evaluation.md', doc, exists).map((d) => `${d.where} ${d.pointer} -> ${d.resolved}`)).toEqual([
      'docs/evaluation.md:2 (training.md) -> docs/training.md',
    ]);
    // Paths inside other paths and URLs are not document pointers of this repository.
    expect(danglingIn('src/z.ts', 'https://github.com/o/r/blob/main/docs/training.md src/open-r1/docs/evaluation.md trainer/README.md "$B/eval-${1}-${2}.md" ${name}.md', exists)).toEqual([]);
  });

  test('every docs/*.md path, bare *.md citation and relative markdown link names a file of the repository', () => {
    const files = repositoryFiles();
    const paths = existingPaths(files);
    const dangling = files
      .filter((f) => SCANNED.test(f) && f !== SELF)
      .flatMap((file) => danglingIn(file, readFileSync(join(ROOT, file), 'utf8'), (p) => paths.has(p)));
    const report = dangling.map((d) => `${d.where}: ${d.pointer}${d.resolved !== d.pointer ? ` -> ${d.resolved}` : ''} does not exist`);
    expect(report).toEqual([]);
  });
});
