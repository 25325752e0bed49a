/**
 * Installs `@tensorflow/tfjs-node` (or `-gpu`) without internet access: builds its native
 * addon against a libtensorflow taken from a TensorFlow pip wheel or a libtensorflow folder,
 * instead of the download its own installer makes (storage.googleapis.com).
 *
 *   npx tsx scripts/install-tfjs-node.ts [--from <tensorflow-*.whl | libtensorflow folder>] [--gpu]
 *
 * --from   a TensorFlow wheel (`tensorflow_cpu-*.whl`; with --gpu `tensorflow-*.whl`, which has
 *          CUDA support on Linux) or an unpacked libtensorflow tarball (lib/ and include/).
 *          Without it: `pip download --no-deps tensorflow-cpu` (`tensorflow` with --gpu) from
 *          pip's configured index, e.g. a local mirror.
 * --gpu    builds `@tensorflow/tfjs-node-gpu` instead of `@tensorflow/tfjs-node`.
 *
 * Needs g++, make and python3 (node-gyp) and, for wheels, `unzip` or python3. The package is
 * added to node_modules without touching package.json or the lock file (`npm ci` removes it).
 * The tfjs backend then picks it first (`runtime: auto`), and reports the runtime it runs on.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { NATIVE_PACKAGES } from '../plugins/backend-tfjs/runtime.ts';
import { PACKAGE_ROOT } from '../src/package-root.ts';

const { values: args } = parseArgs({ options: { from: { type: 'string' }, gpu: { type: 'boolean', default: false } } });
const pkgName = NATIVE_PACKAGES[args.gpu ? 'tfjs-node-gpu' : 'tfjs-node'];
const nodeModules = join(PACKAGE_ROOT, 'node_modules');
const pkgDir = join(nodeModules, pkgName);

function fail(message: string): never {
  console.error(`install-tfjs-node: ${message}`);
  process.exit(1);
}

function run(cmd: string, argv: string[], cwd = PACKAGE_ROOT): void {
  const r = spawnSync(cmd, argv, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) fail(`${cmd} ${argv.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
}

/** The wheel or folder to take libtensorflow from. */
function source(): string {
  if (args.from) {
    const from = resolve(args.from);
    if (!existsSync(from)) fail(`--from ${from} does not exist`);
    return from;
  }
  const dir = join(tmpdir(), 'capibara-tfjs-node-wheel');
  const wheel = args.gpu ? 'tensorflow' : 'tensorflow-cpu';
  console.log(`* pip download ${wheel} (no --from given)`);
  const pip = spawnSync('pip', ['download', '--no-deps', '--only-binary=:all:', '-d', dir, wheel], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (pip.status !== 0) fail(`pip download ${wheel} failed (${pip.error?.message ?? `exit ${pip.status}`}); pass --from <wheel or libtensorflow folder>`);
  const found = readdirSync(dir)
    .filter((f) => f.startsWith(wheel.replace('-', '_') + '-') && f.endsWith('.whl'))
    .sort()
    .at(-1);
  if (!found) fail(`pip download left no ${wheel} wheel in ${dir}`);
  return join(dir, found);
}

/** Files of the wheel that libtensorflow's C API needs: the two libraries and the C headers. */
const WHEEL_MEMBERS = [
  'tensorflow/libtensorflow_cc.so.2',
  'tensorflow/libtensorflow_framework.so.2',
  'tensorflow/include/tensorflow/c/*',
  'tensorflow/include/tensorflow/core/platform/*',
  'tensorflow/include/tsl/*',
  'tensorflow/include/xla/tsl/*',
];

/**
 * A folder with lib/ and include/ like the libtensorflow tarballs, made once per source under
 * node_modules/.cache (the libraries are ~850 MB; both packages share it).
 */
function libtensorflowFolder(from: string): string {
  if (statSync(from).isDirectory()) {
    if (!existsSync(join(from, 'include/tensorflow/c/c_api.h'))) fail(`${from} has no include/tensorflow/c/c_api.h (expected a libtensorflow folder)`);
    return from;
  }
  const dest = join(nodeModules, '.cache', 'libtensorflow', basename(from, '.whl'));
  if (existsSync(join(dest, 'include/tensorflow/c/c_api.h'))) return dest;
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  console.log(`* unpacking libtensorflow from ${basename(from)}`);
  const unzip = spawnSync('unzip', ['-q', '-o', from, ...WHEEL_MEMBERS, '-d', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (unzip.error) {
    const py = `import fnmatch,sys,zipfile
z=zipfile.ZipFile(sys.argv[1]); pats=sys.argv[3:]
for m in z.namelist():
    if any(fnmatch.fnmatch(m,p) for p in pats): z.extract(m,sys.argv[2])`;
    run('python3', ['-c', py, from, tmp, ...WHEEL_MEMBERS]);
  } else if (unzip.status !== 0) fail(`unzip ${from} failed (exit ${unzip.status})`);
  const tf = join(tmp, 'tensorflow');
  if (!existsSync(join(tf, 'libtensorflow_cc.so.2'))) fail(`${basename(from)} has no tensorflow/libtensorflow_cc.so.2: not a TensorFlow wheel for Linux`);
  mkdirSync(join(tmp, 'lib'));
  for (const lib of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) renameSync(join(tf, lib), join(tmp, 'lib', lib));
  // The C API lives in libtensorflow_cc in the wheels; the addon links `-ltensorflow`.
  symlinkSync('libtensorflow_cc.so.2', join(tmp, 'lib', 'libtensorflow.so'));
  symlinkSync('libtensorflow_framework.so.2', join(tmp, 'lib', 'libtensorflow_framework.so'));
  renameSync(join(tf, 'include'), join(tmp, 'include'));
  rmSync(tf, { recursive: true });
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dirname(dest), { recursive: true });
  renameSync(tmp, dest);
  return dest;
}

/** npm's own node-gyp (npm ships one), else the registry's. */
function nodeGyp(): { cmd: string; argv: string[] } {
  const candidates = [process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')];
  try {
    candidates.push(join(execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {
    /* no global npm root */
  }
  const found = candidates.find((c): c is string => !!c && existsSync(c));
  return found ? { cmd: process.execPath, argv: [found] } : { cmd: 'npx', argv: ['--yes', 'node-gyp'] };
}

// 1. The package and its dependencies, without its install script (the download).
const tfjsVersion = (JSON.parse(readFileSync(join(nodeModules, '@tensorflow/tfjs/package.json'), 'utf8')) as { version: string }).version;
if (!existsSync(join(pkgDir, 'package.json'))) {
  console.log(`* npm install ${pkgName}@${tfjsVersion} (no save, no install scripts)`);
  run('npm', ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `${pkgName}@${tfjsVersion}`]);
}

// 2. libtensorflow where the addon's build and its rpath ($ORIGIN/../../deps/lib) expect it.
const lib = libtensorflowFolder(source());
rmSync(join(pkgDir, 'deps'), { recursive: true, force: true });
symlinkSync(lib, join(pkgDir, 'deps'), 'dir');

// 3. The addon, built where node-pre-gyp's `find` (what the package loads) looks for it.
const require = createRequire(join(pkgDir, 'package.json'));
const preGyp = require('@mapbox/node-pre-gyp') as { find(packageJson: string): string };
const bindingPath = preGyp.find(join(pkgDir, 'package.json'));
const napi = /napi-v(\d+)/.exec(bindingPath)?.[1];
if (!napi) fail(`cannot tell the N-API version from ${bindingPath}`);
const gyp = nodeGyp();
console.log(`* building ${basename(bindingPath)} (N-API ${napi}) against ${lib}`);
run(gyp.cmd, [...gyp.argv, 'rebuild', `--napi_build_version=${napi}`, '--module_name=tfjs_binding', `--module_path=${dirname(bindingPath)}`], pkgDir);
mkdirSync(dirname(bindingPath), { recursive: true });
copyFileSync(join(pkgDir, 'build', 'Release', 'tfjs_binding.node'), bindingPath);

// 4. Proof it loads: the TensorFlow version, whether it sees a GPU, one matMul.
const check =
  `const tf = require(${JSON.stringify(pkgDir)});
const y = tf.tensor2d([[1, 2], [3, 4]]).matMul(tf.tensor2d([[1], [1]])).dataSync();
if (y[0] !== 3 || y[1] !== 7) throw new Error('matMul gave ' + y);
console.log('* ${pkgName} works: backend ' + tf.getBackend() + ', TensorFlow ' + tf.backend().binding.TF_Version + ` +
  `', GPU ' + (tf.backend().isUsingGpuDevice ? 'in use' : 'none'));`;
run(process.execPath, ['-e', check]);
