// Builds the CUDA backend's native addon (src/cuda/native/*) into build/Release/wan_cuda.node
// with nvcc alone: N-API headers come from the node-api-headers package, the N-API symbols are
// left for Node to resolve at load time, cuBLAS and cuBLASLt are linked from the toolkit. cuDNN is
// never linked: when its headers are found the cuDNN path (fused attention, convolutions) is
// compiled in and the addon loads libcudnn.so.9 at run time; without them it is left out.
//
//   npm run build:cuda                     build for sm_80 and sm_90 (a source checkout)
//   npx wan-tfjs build-cuda                the same from an installed package (builds in node_modules/wan-tfjs)
//   WAN_CUDA_ARCHS=90 npm run build:cuda   other targets (comma-separated compute capabilities)
//   node src/cuda/build.mjs --compile-only compile every source, link nothing (syntax check)
//   CUDA_HOME=/opt/cuda npm run build:cuda a toolkit outside /usr/local/cuda
//   WAN_CUDNN_INCLUDE=/path/include ...    cuDNN headers outside /usr/include and Python's nvidia/cudnn
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const srcDir = path.join(root, 'src', 'cuda', 'native');
const objDir = path.join(root, 'build', 'obj');
const outFile = path.join(root, 'build', 'Release', 'wan_cuda.node');
const compileOnly = process.argv.includes('--compile-only');
const extraInclude = process.env.WAN_CUDA_EXTRA_INCLUDE;

function fail(message) {
  console.error(`build:cuda: ${message}`);
  process.exit(1);
}

/** nvcc: $CUDA_HOME/bin (an explicit CUDA_HOME without it is an error), $CUDA_PATH/bin, /usr/local/cuda/bin, then PATH. */
function findNvcc() {
  const inHome = (h) => (fs.existsSync(path.join(h, 'bin', 'nvcc')) ? fs.realpathSync(path.join(h, 'bin', 'nvcc')) : undefined);
  if (process.env.CUDA_HOME) {
    return inHome(process.env.CUDA_HOME) ?? fail(`nvcc not found: CUDA_HOME=${process.env.CUDA_HOME} has no bin/nvcc (install the CUDA toolkit 12 or 13, or fix CUDA_HOME)`);
  }
  const onPath = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter(Boolean)
    .map((d) => path.join(d, 'nvcc'))
    .find((p) => fs.existsSync(p));
  const found = (process.env.CUDA_PATH ? inHome(process.env.CUDA_PATH) : undefined) ?? inHome('/usr/local/cuda') ?? (onPath && fs.realpathSync(onPath));
  return found ?? fail('nvcc not found (not in $CUDA_PATH or /usr/local/cuda, nor on PATH): install the CUDA toolkit (12 or 13) or set CUDA_HOME to its folder');
}

const nvcc = findNvcc();
const cudaHome = path.resolve(path.dirname(nvcc), '..');
const libDirs = [path.join(cudaHome, 'lib64'), path.join(cudaHome, 'targets', 'x86_64-linux', 'lib'), path.join(cudaHome, 'lib')].filter(
  (d) => fs.existsSync(d),
);
// N-API headers: the node-api-headers package (a devDependency, so in a checkout; hoisted beside an
// installed package when the project has it), else the headers that Node's own distribution ships.
const napiCandidates = [
  path.join(root, 'node_modules', 'node-api-headers', 'include'),
  path.join(root, '..', 'node-api-headers', 'include'),
  path.join(path.dirname(process.execPath), '..', 'include', 'node'),
];
const napiInclude = napiCandidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
if (!napiInclude) fail(`N-API headers (node_api.h) not found in ${napiCandidates.join(', ')}: npm install node-api-headers`);
const cublasHeader = [path.join(cudaHome, 'include'), ...(extraInclude ? [extraInclude] : [])].some((d) =>
  fs.existsSync(path.join(d, 'cublas_v2.h')),
);
if (!cublasHeader) fail(`cuBLAS headers not found under ${path.join(cudaHome, 'include')}: install the toolkit's cuBLAS (libcublas-dev)`);
if (!compileOnly && !libDirs.some((d) => fs.readdirSync(d).some((f) => f.startsWith('libcublas.so')))) {
  fail(`libcublas.so not found in ${libDirs.join(', ') || cudaHome}: install the toolkit's cuBLAS`);
}

/** The first folder holding cudnn.h: $WAN_CUDNN_INCLUDE, /usr/include, then Python's nvidia/cudnn/include ($WAN_CUDNN=0: none). */
function findCudnnInclude() {
  if (process.env.WAN_CUDNN === '0') return undefined;
  const candidates = [process.env.WAN_CUDNN_INCLUDE, '/usr/include', '/usr/include/x86_64-linux-gnu'];
  try {
    const pkg = execFileSync('python3', ['-c', 'import nvidia.cudnn as m; print(list(m.__path__)[0])'], {
      encoding: 'utf-8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (pkg) candidates.push(path.join(pkg, 'include'));
  } catch {
    // no Python, or no nvidia-cudnn package: only the other folders
  }
  return candidates.filter(Boolean).find((d) => fs.existsSync(path.join(d, 'cudnn.h')) && fs.existsSync(path.join(d, 'cudnn_graph.h')));
}

const cudnnInclude = findCudnnInclude();

const archs = (process.env.WAN_CUDA_ARCHS ?? '80,90').split(',').map((s) => s.trim()).filter(Boolean);
const gencode = archs.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
const common = [
  '-std=c++17',
  '-O3',
  '-Xcompiler',
  '-fPIC',
  '-I',
  napiInclude,
  ...(extraInclude ? ['-I', extraInclude] : []),
  ...(cudnnInclude ? ['-DWAN_HAVE_CUDNN', '-I', cudnnInclude] : []),
  ...gencode,
];
console.log(
  cudnnInclude
    ? `cuDNN headers: ${cudnnInclude} (building the cuDNN attention and convolution path; libcudnn.so.9 is loaded at run time)`
    : 'cuDNN headers not found (WAN_CUDNN_INCLUDE, /usr/include, Python nvidia/cudnn/include): building without the cuDNN path; ' +
        'bf16 attention uses the built-in flash kernel and bf16 convolutions run in float32',
);
const sources = fs.readdirSync(srcDir).filter((f) => f.endsWith('.cu') || f.endsWith('.cpp')).sort();
const headers = fs.readdirSync(srcDir).filter((f) => f.endsWith('.h') || f.endsWith('.cuh')).map((f) => path.join(srcDir, f));
const newestHeader = Math.max(...headers.map((h) => fs.statSync(h).mtimeMs), fs.statSync(fileURLToPath(import.meta.url)).mtimeMs);

function run(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(nvcc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nvcc ${args.join(' ')} exited with ${code}`))));
  });
}

// Objects built with and without the cuDNN path differ: a change of that choice rebuilds them all.
const stampFile = path.join(objDir, 'cudnn-include.txt');
const cudnnChanged = !fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf-8') !== (cudnnInclude ?? '');

async function compileAll() {
  fs.mkdirSync(objDir, { recursive: true });
  const jobs = sources.map((f) => {
    const src = path.join(srcDir, f);
    const obj = path.join(objDir, `${f}.o`);
    const stale = !fs.existsSync(obj) || fs.statSync(obj).mtimeMs < Math.max(fs.statSync(src).mtimeMs, newestHeader) || cudnnChanged;
    return { src, obj, stale };
  });
  const queue = jobs.filter((j) => j.stale);
  const parallel = Math.max(1, Math.min(queue.length, os.cpus().length));
  let next = 0;
  const worker = async () => {
    while (next < queue.length) {
      const j = queue[next++];
      console.log(`nvcc ${path.relative(root, j.src)}`);
      await run([...common, '-x', 'cu', '-c', j.src, '-o', j.obj]);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  fs.writeFileSync(stampFile, cudnnInclude ?? '');
  return jobs.map((j) => j.obj);
}

const objects = await compileAll().catch((e) => fail(e.message));
if (compileOnly) {
  console.log(`compiled ${objects.length} sources (no link)`);
  process.exit(0);
}
fs.mkdirSync(path.dirname(outFile), { recursive: true });
const rpath = libDirs.flatMap((d) => ['-Xlinker', `-rpath,${d}`]);
await run([
  '-shared',
  ...gencode,
  '-o',
  outFile,
  ...objects,
  ...libDirs.flatMap((d) => ['-L', d]),
  '-lcublas',
  '-lcublasLt',
  '-ldl',
  '-Xlinker',
  '--unresolved-symbols=ignore-all',
  ...rpath,
]).catch((e) => fail(e.message));
console.log(
  `built ${path.relative(root, outFile)} (${archs.map((a) => `sm_${a}`).join(', ')}) with ${nvcc}; ` +
    `paths: cuBLAS (float32), cuBLASLt (bfloat16), flash attention (bfloat16)${cudnnInclude ? ', cuDNN attention and convolution' : ''}`,
);
