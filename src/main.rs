//! The `preheat` command line: parses flags, sets up logging, runs a command, maps the outcome
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

// glibc's allocator took over a third of a warm's instructions: values are allocated on the
// thread that reads the database and freed on the runtime's. mimalloc, which also serves the
// C libraries' malloc (SQLite's, zstd's), cut a 100k-key warm from SQLite into Redis by 24%
// of its instructions (callgrind). Transparent huge pages stay off, so the resident memory
// that the warm's budget watches grows by pages, not 2 MiB steps.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.global);
    match cli::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            cli::report_error(&err);
            cli::exit_code_for(&err).into()
        }
    }
}
