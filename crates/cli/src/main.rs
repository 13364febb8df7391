use clap::Parser;

use codex_orchestrator::cli::{Cli, dispatch};

fn main() {
    let cli = Cli::parse();
    codex_orchestrator_core::telemetry::init(cli.log_format.into(), &cli.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code
        }
    };
    // Background work still running (the backend's warm-up hashing a runner image's files, a
    // run's driver) must not hold the exit: give it a moment, then go. Runs continue in their
    // sandboxes and the next server re-attaches to them.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
