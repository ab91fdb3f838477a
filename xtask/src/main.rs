//! `cargo xtask`: parse the command line and dispatch to the command's module. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use xtask::flags::{Command, Xtask};

fn main() -> ExitCode {
    let cli = Xtask::parse();
    xtask::set_project_root_override(cli.global.project_root.clone());
    let result = match &cli.command {
        Command::Layer(args) => xtask::layer::run(&cli.global, args),
        Command::Lock(args) => xtask::lock::run(&cli.global, args),
        Command::Verify(args) => xtask::verify::run(&cli.global, args),
        Command::Deploy(args) => xtask::deploy::run(&cli.global, args),
        Command::Patch(args) => xtask::serverless::run(&cli.global, args),
        Command::Doctor(args) => xtask::doctor::run(&cli.global, args),
        Command::Test(args) => xtask::test_suite::run(&cli.global, args),
        Command::Bench(args) => xtask::bench::run(&cli.global, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
