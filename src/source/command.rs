//! Command sources: a configured program computes each value.
//!
//! The program is run directly, never through a shell, so a parameter such as `$(reboot)` or
//! `; rm -rf /` arrives as one literal argument. It gets the key's parameters either as
//! arguments (the rule's `args` templates) or as a JSON object on stdin, and answers with the
//! value on stdout and exit status 0; empty output means it has no value for that key. A
//! program that outlives its timeout is killed.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Fetched, SourceError};
use crate::failure::FailureReason;

/// How a command receives a key's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandInput {
    /// As arguments, rendered from the rule's `args`.
    Args,
    /// As one JSON object on stdin: `{"rule": ..., "key": ..., "params": {...}}`.
    Json,
}

/// Stderr kept for an error message.
const STDERR_EXCERPT: usize = 300;

/// A program that computes values.
pub struct CommandSource {
    name: String,
    argv: Vec<String>,
    input: CommandInput,
    timeout: Duration,
    max_bytes: u64,
}

impl CommandSource {
    /// A source running `argv` (program, then fixed arguments).
    pub fn new(
        name: &str,
        argv: &[String],
        input: CommandInput,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Self, SourceError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(SourceError::fatal(name, "`command` names no program".into()));
        }
        Ok(CommandSource { name: name.to_string(), argv: argv.to_vec(), input, timeout, max_bytes })
    }

    /// Whether the program exists and may be run (found on `PATH` when it has no `/`).
    pub fn ping(&self) -> Result<(), SourceError> {
        use std::os::unix::fs::PermissionsExt;
        let program = std::path::Path::new(&self.argv[0]);
        let candidates: Vec<std::path::PathBuf> = if self.argv[0].contains('/') {
            vec![program.to_path_buf()]
        } else {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).map(|dir| dir.join(program)).collect())
                .unwrap_or_default()
        };
        let runnable = candidates
            .iter()
            .any(|c| c.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0));
        if runnable {
            Ok(())
        } else {
            Err(SourceError::fatal(
                &self.name,
                format!("`{}` is not an executable file (nor on PATH)", self.argv[0]),
            ))
        }
    }

    /// Runs the program once: with `args` appended (`Args`), or with `stdin` written to it
    /// (`Json`).
    pub async fn fetch(&self, args: &[String], stdin: &str) -> Result<Fetched, SourceError> {
        let mut command = tokio::process::Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .args(args)
            .stdin(if self.input == CommandInput::Json { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A run cancelled at the deadline must not leave the program behind.
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| SourceError::fatal(&self.name, format!("cannot run `{}`: {e}", self.argv[0])))?;
        let run = async {
            if let Some(mut pipe) = child.stdin.take() {
                // A program that exits without reading its input is its own business.
                let _ = pipe.write_all(stdin.as_bytes()).await;
            }
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            let read_out = async {
                match stdout {
                    Some(s) => s.take(self.max_bytes + 1).read_to_end(&mut out).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let read_err = async {
                match stderr {
                    Some(s) => s.take(STDERR_EXCERPT as u64).read_to_end(&mut err).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let (o, _) = tokio::join!(read_out, read_err);
            o?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(SourceError::fatal(&self.name, format!("`{}`: {e}", self.argv[0]))),
            // Dropping the child kills it (`kill_on_drop`).
            Err(_) => {
                return Err(SourceError {
                    source_name: self.name.clone(),
                    message: format!("`{}` ran longer than {:?} and was killed", self.argv[0], self.timeout),
                    retryable: false,
                    reason: FailureReason::SourceTimeout,
                });
            }
        };
        if out.len() as u64 > self.max_bytes {
            return Err(SourceError {
                source_name: self.name.clone(),
                message: format!(
                    "`{}` wrote more than max_value_size ({} bytes)",
                    self.argv[0], self.max_bytes
                ),
                retryable: false,
                reason: FailureReason::TooLarge,
            });
        }
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err);
            return Err(SourceError {
                source_name: self.name.clone(),
                message: format!("`{}` failed ({status}): {}", self.argv[0], stderr.trim()),
                retryable: false,
                reason: FailureReason::CommandFailed,
            });
        }
        Ok(if out.is_empty() { Fetched::Missing } else { Fetched::Value { value: out, max_ttl: None } })
    }
}
