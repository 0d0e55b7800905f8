//! [`TlsFiles`]: a throwaway certificate authority and a server certificate
//! for `localhost` and `127.0.0.1`, made with the `openssl` command, for
//! tests of `rediss://`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a test CA and a server certificate it signed (valid one
/// day), in a directory the caller owns.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate: what a client must trust.
    pub ca: PathBuf,
    /// The server certificate (`localhost`, `127.0.0.1`).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes the CA and the server certificate in `dir`.
    ///
    /// # Errors
    ///
    /// If `openssl` is missing or fails; the error has its output.
    pub fn generate(dir: &Path) -> io::Result<Self> {
        let at = |name: &str| dir.join(name);
        std::fs::write(
            at("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        // Run in `dir`, with the file names relative to it.
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=eddy test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot run openssl (install it): {e}"))
                })?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "openssl {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        Ok(Self {
            ca: at("ca.crt"),
            cert: at("server.crt"),
            key: at("server.key"),
        })
    }
}
