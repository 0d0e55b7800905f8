//! The Python that interop tests drive the real `leanmq` package with.
//!
//! `cargo test --workspace` sets it up by itself: with no `$EDDY_PYTHON`
//! and no usable `<workspace>/.venv`, the first test that asks creates a
//! virtualenv under the target directory (`target/leanmq-venv`) and installs
//! `leanmq==0.2.0` from PyPI into it. Test binaries run concurrently, so the
//! check and the set-up happen under a file lock beside it: one process
//! builds, the others wait and then use what it built.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The LeanMQ release eddy is wire-compatible with, as pip names it.
const LEANMQ: &str = "leanmq==0.2.0";

/// Prints the installed leanmq version, or fails if it cannot be imported.
const PROBE: &str = "import importlib.metadata as m, leanmq; print(m.version('leanmq'))";

/// A Python that can `import leanmq` 0.2, checked (and if need be set up)
/// once per test binary:
///
/// 1. `$EDDY_PYTHON`, when set: used as it is, never modified;
/// 2. else `<workspace>/.venv/bin/python`, when it has leanmq 0.2;
/// 3. else `<target>/leanmq-venv/bin/python`, created with `python3 -m venv`
///    and `pip install leanmq==0.2.0` if it is missing or unusable
///    (`<target>` is `$CARGO_TARGET_DIR`, else `<workspace>/target`).
///
/// # Panics
///
/// When `$EDDY_PYTHON` cannot import leanmq 0.2, or the virtualenv cannot be
/// made (no `python3`, no `venv` module, no network for pip), with what to
/// do about it: interop tests never skip.
pub fn leanmq_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| match find_or_make() {
        Ok(python) => python,
        Err(why) => panic!("the LeanMQ interop tests need a Python with {LEANMQ}: {why}"),
    })
}

fn find_or_make() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("EDDY_PYTHON").filter(|p| !p.is_empty()) {
        let python = PathBuf::from(python);
        return match leanmq_version(&python) {
            Ok(v) if v.starts_with("0.2.") => Ok(python),
            Ok(v) => Err(format!(
                "{} ($EDDY_PYTHON) has leanmq {v}; install {LEANMQ} into it, \
                 or unset EDDY_PYTHON to let the tests make their own virtualenv",
                python.display()
            )),
            Err(e) => Err(format!(
                "{} ($EDDY_PYTHON) cannot import leanmq: {e}\n\
                 install it (`{} -m pip install {LEANMQ}`), or unset EDDY_PYTHON \
                 to let the tests make their own virtualenv",
                python.display(),
                python.display()
            )),
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dot_venv = workspace.join(".venv/bin/python");
    if matches!(leanmq_version(&dot_venv), Ok(v) if v.starts_with("0.2.")) {
        return Ok(dot_venv);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    make_venv(&target.join("leanmq-venv"))
}

/// The leanmq version `python` imports, or why it cannot.
fn leanmq_version(python: &Path) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", PROBE])
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `dir/bin/python` with leanmq 0.2, made under `dir.lock` unless another
/// process already made it.
fn make_venv(dir: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin/python");
    let lock_path = dir.with_extension("lock");
    if let Some(parent) = lock_path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create the lock {}: {e}", lock_path.display()))?;
    // Blocks while another test binary builds the virtualenv; released when
    // `lock` is dropped, also if this process panics or is killed.
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if matches!(leanmq_version(&python), Ok(v) if v.starts_with("0.2.")) {
        return Ok(python);
    }
    eprintln!(
        "eddy-testkit: creating {} with {LEANMQ} for the LeanMQ interop tests (once; \
         set EDDY_PYTHON to use another Python)",
        dir.display()
    );
    // Whatever is there is unusable (a run interrupted mid-install): start over.
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the unusable {}: {e}", dir.display())),
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(dir),
        "`python3 -m venv` failed; install Python 3 with its venv module \
         (Debian/Ubuntu: `sudo apt-get install python3 python3-venv`), \
         or set EDDY_PYTHON to a Python that has leanmq 0.2",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            LEANMQ,
        ]),
        "pip could not install leanmq from PyPI (is the network up?); \
         or set EDDY_PYTHON to a Python that has leanmq 0.2",
    )?;
    match leanmq_version(&python) {
        Ok(v) if v.starts_with("0.2.") => Ok(python),
        Ok(v) => Err(format!("{} got leanmq {v}", python.display())),
        Err(e) => Err(format!(
            "{} cannot import leanmq after installing it: {e}",
            python.display()
        )),
    }
}

/// Run `command`; on failure, `hint` with the command's output.
fn run(command: &mut Command, hint: &str) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}\n{hint}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} exited with {}:\n{}{}\n{hint}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
