'use strict';
// A Serverless Framework plugin: adds bytecode compiled for the Lambda runtime's Python to the
// deployment zip, after serverless-python-requirements has put the dependencies in it.
//
// Lambda's /var/task is read-only, so a zip without __pycache__ compiles every module it imports
// at every cold start and keeps nothing (BENCHMARKS.md section 8 measures the difference).
// The bytecode must come from the runtime's exact Python version (its magic number), and is
// written with --invalidation-mode unchecked-hash: zips keep file times only to 2 seconds, so
// timestamp-checked bytecode would be found stale and compiled again anyway.
//
// The zip is then written again so that two builds of the same sources give the same bytes (the
// framework skips uploading and updating functions whose zip hash has not changed):
// - each .pyc records /var/task/<path>, where Lambda runs it (compileall's ddir), not the
//   temporary folder it was compiled in, so tracebacks show the real path too;
// - entries in sorted order, each dated 1980-01-01 (the zip format's epoch), mode 0644, or
//   0755 for those that were executable (the wheels' shared objects), no directory entries.
//
// The Python is MAILPIXEL_BYTECODE_PYTHON, else `python3.13` on PATH, else pyenv's 3.13.0. With
// none of them the zip ships as it is, with a warning: slower cold starts, nothing broken.
const { execFileSync } = require('child_process');
const path = require('path');

// Where Lambda unpacks the zip: the source path written into every .pyc.
const TASK_ROOT = '/var/task';

const SCRIPT = `
import compileall, os, pathlib, sys, tempfile, zipfile
target, task_root = pathlib.Path(sys.argv[1]), sys.argv[2]
EPOCH = (1980, 1, 1, 0, 0, 0)
with tempfile.TemporaryDirectory() as folder:
    root = pathlib.Path(folder)
    with zipfile.ZipFile(target) as archive:
        archive.extractall(root)
        executable = {i.filename for i in archive.infolist() if (i.external_attr >> 16) & 0o111}
    compileall.compile_dir(root, ddir=task_root, force=True, quiet=1, workers=0,
                           invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    rewritten = target.with_suffix(".rewrite")
    with zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            entry = zipfile.ZipInfo(name, EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = (0o100755 if name in executable else 0o100644) << 16
            archive.writestr(entry, (root / name).read_bytes())
    os.replace(rewritten, target)
print(sum(name.endswith(".pyc") for name in names))
`;

function runtimePython(version) {
  const candidates = [process.env.MAILPIXEL_BYTECODE_PYTHON, `python${version}`];
  try {
    const prefix = execFileSync('pyenv', ['prefix', `${version}.0`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    candidates.push(path.join(prefix, 'bin', `python${version}`));
  } catch (error) {
    // no pyenv, or no such version in it
  }
  for (const candidate of candidates.filter(Boolean)) {
    try {
      const found = execFileSync(candidate, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
      if (found === version) return candidate;
    } catch (error) {
      // not runnable: try the next
    }
  }
  return null;
}

class Bytecode {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'after:package:createDeploymentArtifacts': () => this.compile() };
  }

  compile() {
    const runtime = this.serverless.service.provider.runtime || '';
    const version = runtime.replace(/^python/, '');
    const python = runtimePython(version);
    const log = (message) => this.serverless.cli.log(`bytecode: ${message}`);
    if (!python) {
      log(`no Python ${version} found (set MAILPIXEL_BYTECODE_PYTHON): the zip ships without bytecode`);
      return;
    }
    // Built here first; `--package DIR` copies it to DIR afterwards.
    const zip = path.join(this.serverless.serviceDir, '.serverless', `${this.serverless.service.service}.zip`);
    const added = execFileSync(python, ['-c', SCRIPT, zip, TASK_ROOT], { encoding: 'utf8' }).trim();
    log(`${added} modules compiled by ${python} into ${path.basename(zip)}`);
  }
}

module.exports = Bytecode;
