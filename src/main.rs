//! The `preheat` command line: parses flags, sets up logging, runs a command, maps the outcome
//! to an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

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
