//! The `cimlake` binary: parse arguments, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cimlake::cli::Cli::parse();
    // Workers get the main thread's 8 MiB of stack, not tokio's 2: planning and evaluating
    // deeply nested expressions (long SQL, large rule sets) recurses.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cimlake::cli::run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages carry names from files and archives: no control character reaches the
            // terminal as it is.
            eprintln!("error: {}", cimlake::output::escape_controls(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`cimlake … | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
