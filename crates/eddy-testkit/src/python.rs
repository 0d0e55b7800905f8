//! The Python that interop tests drive the real `leanmq` package with.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A Python that can `import leanmq` 0.2: `$EDDY_PYTHON`, else the
/// workspace's `.venv/bin/python`. Checked once per test binary.
///
/// # Panics
///
/// When neither works, with the commands that set one up: interop tests
/// never skip silently (in CI, `.ci/run` prepares the virtualenv).
pub fn leanmq_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let (python, source) = match std::env::var_os("EDDY_PYTHON") {
            Some(p) if !p.is_empty() => (PathBuf::from(p), "$EDDY_PYTHON"),
            _ => (
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
                "<workspace>/.venv/bin/python (EDDY_PYTHON is not set)",
            ),
        };
        let setup = "the LeanMQ interop tests need a Python with leanmq 0.2: in the workspace root run \
             `python3 -m venv .venv && .venv/bin/pip install leanmq==0.2.0` (bash .ci/run does this), \
             or set EDDY_PYTHON to a python that can `import leanmq`";
        let ci = if std::env::var_os("CI").is_some() {
            " [CI is set: .ci/run must create .venv and export EDDY_PYTHON before `cargo test`]"
        } else {
            ""
        };
        let probe = std::process::Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m, leanmq; print(m.version('leanmq'))",
            ])
            .output();
        match probe {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                assert!(
                    version.starts_with("0.2."),
                    "{} ({source}) has leanmq {version}, but eddy is wire-compatible with leanmq 0.2: {setup}{ci}",
                    python.display()
                );
                python
            }
            Ok(out) => panic!(
                "{} ({source}) cannot import leanmq: {}\n{setup}{ci}",
                python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("cannot run {} ({source}): {e}\n{setup}{ci}", python.display()),
        }
    })
}
