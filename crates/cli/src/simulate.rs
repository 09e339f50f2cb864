//! `fedsearch simulate`: N federated clients on one machine (placeholder until implemented).

use crate::error::{CliError, CliResult};

/// Options of `fedsearch simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {}

/// Runs the simulation.
pub fn run(_args: &SimulateArgs) -> CliResult<()> {
    Err(CliError::Input("simulate is not implemented yet".into()))
}
