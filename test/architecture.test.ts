// The import graph of src/, layers/, schedulers/ and weights/ (parsed from the .ts sources with the
// TypeScript parser): no cycles, and none of the edges DESIGN.md forbids. A second test builds
// wan-tfjs/layers with the project's tsup settings and checks the bundle imports no Node built-in.
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { build } from 'tsup';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FOLDERS = ['src', 'layers', 'schedulers', 'weights'];

/** One import of a module: its target (a repository path, or a package / built-in name) and how it is made. */
interface Edge {
  from: string;
  to: string;
  /** `import type` / `export type`, or only type bindings: erased from the JavaScript. */
  typeOnly: boolean;
  /** `import('…')`: loaded on demand. */
  dynamic: boolean;
}

const isBuiltin = (name: string) => name.startsWith('node:') || builtinModules.includes(name.split('/')[0]);

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (rel.endsWith('.ts') && !rel.endsWith('.d.ts')) out.push(rel);
    }
  };
  FOLDERS.forEach(walk);
  return out.sort();
}

/** `./x.js` from `from` → the repository path of x.ts (or x/index.ts); a bare name stays itself. */
function resolveSpecifier(from: string, spec: string): string {
  if (!spec.startsWith('.')) return spec;
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec)).replace(/\.js$/, '');
  for (const candidate of [`${base}.ts`, `${base}/index.ts`]) if (fs.existsSync(path.join(ROOT, candidate))) return candidate;
  throw new Error(`${from}: cannot resolve '${spec}'`);
}

/** Every import, export-from and import() of a file. */
function importsOf(file: string): Edge[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf-8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const edges: Edge[] = [];
  const add = (spec: ts.Expression | undefined, typeOnly: boolean, dynamic: boolean) => {
    if (spec && ts.isStringLiteralLike(spec)) edges.push({ from: file, to: resolveSpecifier(file, spec.text), typeOnly, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const bindings = clause?.namedBindings;
      const onlyTypes =
        !!clause && (clause.isTypeOnly || (!clause.name && !!bindings && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, onlyTypes, false);
    } else if (ts.isExportDeclaration(node)) {
      const clause = node.exportClause;
      const onlyTypes = node.isTypeOnly || (!!clause && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly));
      add(node.moduleSpecifier, onlyTypes, false);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

const FILES = sourceFiles();
const EDGES = FILES.flatMap(importsOf);
const runtime = EDGES.filter((e) => !e.typeOnly);

/** Strongly connected components with more than one module (or a module importing itself), by Tarjan's algorithm. */
function cycles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) if (FILES.includes(e.to)) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let counter = 0;
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (next.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const f of FILES) if (!index.has(f)) connect(f);
  return out;
}

/** Modules reachable from `start` over runtime imports (static and dynamic). */
function reachable(start: string): Set<string> {
  const seen = new Set<string>([start]);
  const todo = [start];
  while (todo.length) {
    const f = todo.pop()!;
    for (const e of runtime) {
      if (e.from === f && FILES.includes(e.to) && !seen.has(e.to)) {
        seen.add(e.to);
        todo.push(e.to);
      }
    }
  }
  return seen;
}

const under = (folder: string) => (p: string) => p === folder || p.startsWith(`${folder}/`);
const show = (e: Edge) => `${e.from} → ${e.to}${e.typeOnly ? ' (type)' : ''}${e.dynamic ? ' (dynamic)' : ''}`;

/** What the modules of a folder must not import (DESIGN.md, "Who may import whom"). */
const FORBIDDEN: Array<{ from: (p: string) => boolean; to: (p: string) => boolean; rule: string }> = [
  { from: under('layers'), to: isBuiltin, rule: 'a layer reads no files: layers/ imports no Node built-in (weights/ does the I/O)' },
  { from: under('layers'), to: (p) => under('src/pipeline')(p) || p === 'src/cli.ts' || under('src/video')(p), rule: 'layers/ imports no pipeline, CLI or video' },
  { from: under('weights'), to: under('layers'), rule: 'weights/ knows no layer class: it fills anything that lists namedWeights()' },
  { from: under('weights'), to: isBuiltin, rule: 'weights/ reaches the file system only through weights/file-system.ts (no Node built-in import)' },
  { from: under('schedulers'), to: under('layers'), rule: 'schedulers/ imports no layer' },
  {
    from: (p) => under('layers')(p) || under('schedulers')(p) || under('weights')(p),
    to: (p) => under('src/pipeline')(p) || p === 'src/cli.ts' || under('src/video')(p) || under('src/text')(p),
    rule: 'layers/, schedulers/ and weights/ import no pipeline, CLI, text or video',
  },
  { from: under('src/backend'), to: (p) => under('layers')(p) || under('src/pipeline')(p), rule: 'the backend knows no model' },
  { from: under('src/cuda'), to: under('src/backend'), rule: 'src/cuda does not import src/backend (they share src/kernels/registry.ts)' },
];

describe('architecture: the import graph of src/, layers/, schedulers/, weights/', () => {
  it('parses every module and resolves every relative import', () => {
    expect(FILES.length).toBeGreaterThan(100);
    expect(EDGES.some((e) => e.from === 'layers/wan-transformer-3d-model.ts' && e.to === 'weights/load-pretrained.ts')).toBe(true);
    expect(EDGES.some((e) => e.dynamic && e.from === 'src/backend/select.ts' && e.to === 'src/cuda/index.ts')).toBe(true);
  });

  it('has no import cycle (static or dynamic imports, types included)', () => {
    expect(cycles(EDGES).map((c) => c.join(' ⇄ '))).toEqual([]);
  });

  it('has none of the forbidden edges', () => {
    const bad = EDGES.filter((e) => !(isBuiltin(e.to) && e.typeOnly)).flatMap((e) => FORBIDDEN.filter((r) => r.from(e.from) && r.to(e.to)).map((r) => `${show(e)}: ${r.rule}`));
    expect(bad).toEqual([]);
  });

  it('src/backend loads src/cuda only on demand (a dynamic import in selectBackend)', () => {
    const edges = runtime.filter((e) => under('src/backend')(e.from) && under('src/cuda')(e.to));
    expect(edges.filter((e) => !e.dynamic).map(show)).toEqual([]);
  });

  it('layers/ reaches no Node built-in, pipeline, CLI or video through any module it imports', () => {
    const closure = reachable('layers/index.ts');
    const bad = runtime.filter((e) => closure.has(e.from) && (isBuiltin(e.to) || under('src/pipeline')(e.to) || e.to === 'src/cli.ts' || under('src/video')(e.to)));
    expect(bad.map(show)).toEqual([]);
    // The one run-time lookup of a built-in: weights/file-system.ts (process.getBuiltinModule), when a file is read.
    const lookups = [...closure].filter((f) => fs.readFileSync(path.join(ROOT, f), 'utf-8').includes('getBuiltinModule'));
    expect(lookups).toEqual(['weights/file-system.ts']);
  });
});

describe('architecture: the built wan-tfjs/layers bundle', () => {
  it('imports and requires no Node built-in', async () => {
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-layers-dist-'));
    try {
      await build({
        entry: { 'layers/index': path.join(ROOT, 'layers/index.ts') },
        format: ['esm', 'cjs'],
        outDir,
        dts: false,
        sourcemap: false,
        splitting: false,
        target: 'node20',
        silent: true,
        config: false,
        external: [/^@tensorflow\//, /^@huggingface\//, /^@ffmpeg-installer\//],
      });
      const found: string[] = [];
      for (const file of ['layers/index.js', 'layers/index.cjs']) {
        const text = fs.readFileSync(path.join(outDir, file), 'utf-8');
        const specifiers = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"']+)["']/g)].map((m) => m[1]);
        expect(specifiers.length, file).toBeGreaterThan(0);
        found.push(...specifiers.filter(isBuiltin).map((s) => `${file}: ${s}`));
      }
      expect(found).toEqual([]);
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  });
});
