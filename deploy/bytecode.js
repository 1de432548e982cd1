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
// The Python is MAILPIXEL_BYTECODE_PYTHON, else `python3.13` on PATH, else pyenv's 3.13.0. With
// none of them the zip ships as it is, with a warning: slower cold starts, nothing broken.
const { execFileSync } = require('child_process');
const path = require('path');

const SCRIPT = `
import compileall, pathlib, sys, tempfile, zipfile
target = pathlib.Path(sys.argv[1])
with tempfile.TemporaryDirectory() as folder:
    with zipfile.ZipFile(target) as archive:
        archive.extractall(folder)
    compileall.compile_dir(folder, quiet=1, workers=0,
                           invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH)
    added = 0
    with zipfile.ZipFile(target, "a", zipfile.ZIP_DEFLATED) as archive:
        known = set(archive.namelist())
        for pyc in sorted(pathlib.Path(folder).rglob("*.pyc")):
            name = pyc.relative_to(folder).as_posix()
            if name not in known:
                archive.write(pyc, name)
                added += 1
print(added)
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
    const added = execFileSync(python, ['-c', SCRIPT, zip], { encoding: 'utf8' }).trim();
    log(`${added} modules compiled by ${python} into ${path.basename(zip)}`);
  }
}

module.exports = Bytecode;
