//! The CLI's error: a one-line message for `error: <message>` on stderr.

use std::fmt;
use std::io;

/// A failed command. Library errors keep their message, which already says
/// what to do.
#[derive(Debug)]
pub struct CliError {
    message: String,
    broken_pipe: bool,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            broken_pipe: false,
        }
    }

    /// Whether stdout was closed by the reader (`eddy ... | head -1`): not
    /// a failure of the command.
    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }

    /// The message on one line (a multi-line server error would otherwise
    /// break `error: ...` parsing in scripts).
    pub fn one_line(&self) -> String {
        self.message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<eddy::Error> for CliError {
    fn from(e: eddy::Error) -> Self {
        Self::new(e.message())
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        Self {
            broken_pipe: e.kind() == io::ErrorKind::BrokenPipe,
            ..Self::new(format!("I/O error: {e}"))
        }
    }
}

/// Shorthand for the commands' results.
pub type CliResult<T = ()> = Result<T, CliError>;
