use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use actors::tables::Tables;
use messages::parse::rules::parse_rules;

/// upcalld: the userspace slow path of an Open vSwitch-style switch.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the megaflow and datapath actions Open vSwitch's
    /// `ofproto/trace` would print for a flow.
    Trace {
        /// Rules in `ovs-ofctl add-flows` syntax (OpenFlow 1.3).
        #[arg(long)]
        rules: PathBuf,
        /// A file of flows, one per line: prints one TSV line each.
        #[arg(long, conflicts_with = "flow")]
        flows: Option<PathBuf>,
        /// One flow in `ofproto/trace` syntax.
        #[arg(required_unless_present = "flows")]
        flow: Option<String>,
    },
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_trace(rules: &PathBuf, flows: Option<&PathBuf>, flow: Option<&str>) -> Result<(), String> {
    let text = read(rules)?;
    let rules = parse_rules(&text).map_err(|e| format!("{}:{e}", rules.display()))?;
    let tables = Tables::from_rules(rules);
    if let Some(path) = flows {
        print!("{}", upcalld::trace::trace_lines(&tables, &read(path)?));
        return Ok(());
    }
    let r = upcalld::trace::trace(&tables, flow.unwrap_or_default())?;
    println!("Megaflow: {}", r.megaflow);
    println!("Datapath actions: {}", r.actions);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Trace { rules, flows, flow } => run_trace(rules, flows.as_ref(), flow.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upcalld: {e}");
            ExitCode::FAILURE
        }
    }
}
