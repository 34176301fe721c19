//! The `upcalld` command: run the daemon, control it, benchmark it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use upcalld::config::{Config, DEFAULT_SOCKET};
use upcalld::control::{self, Command, Header};

/// mimalloc: the slow path allocates and frees per upcall across threads
/// (handlers build what the dpif-writer consumes), where glibc's arenas
/// are slow.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "upcalld",
    version,
    about = "The userspace slow path of an Open vSwitch-style switch"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (without --config: a demo of two namespaces joined through it).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Talk to a running daemon.
    Ctl {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(subcommand)]
        command: CtlCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: BenchCmd,
    },
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
        /// The bridge's ports, e.g. `1-8`: output to any other port is
        /// dropped, as OVS drops it. Default: every port number exists
        /// (the ports of --config when given).
        #[arg(long)]
        ports: Option<String>,
        /// The conntrack state each recirculation resumes with, in order
        /// (repeatable; names separated by commas, e.g. `trk,est`), as
        /// `ofproto/trace --ct-next`. Default: `trk|new`.
        #[arg(long = "ct-next")]
        ct_next: Vec<String>,
        /// A daemon configuration whose numbered `[[port]]`s are the
        /// bridge's ports, with their VLAN settings for NORMAL.
        #[arg(long)]
        config: Option<PathBuf>,
        /// NORMAL's MAC table to trace with, in `ovs-appctl fdb/show`
        /// format (port, VLAN, MAC, age per line).
        #[arg(long)]
        fdb: Option<PathBuf>,
        /// Run the effects a real packet has, as OVS's `ofproto/trace
        /// -generate`: `learn` actions add their rules and NORMAL learns
        /// source MACs, so later passes and later flows of --flows see
        /// them. Without it a trace changes nothing.
        #[arg(long)]
        learn: bool,
        /// Switch state to trace with, one `ctl` command a line:
        /// `add-tlv-map {class=0xffff,type=0,len=4}->tun_metadata0`.
        #[arg(long)]
        setup: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Add one rule.
    AddFlow { rule: String },
    /// Add the rules of a file ("-" for standard input).
    AddFlows { file: PathBuf },
    /// Delete the rules a match selects (every rule without one), as
    /// `ovs-ofctl del-flows`: `table=`, `cookie=V/MASK`, `out_port=`.
    DelFlows {
        /// Only rules with exactly this match and `priority=`.
        #[arg(long)]
        strict: bool,
        r#match: Option<String>,
    },
    /// Change the actions of the rules a match selects, as `ovs-ofctl
    /// mod-flows` (adds the rule if none matches and no cookie mask is given).
    ModFlows {
        /// Only rules with exactly this match and `priority=`.
        #[arg(long)]
        strict: bool,
        flow: String,
    },
    /// Replace every rule with those of a file, atomically.
    ReplaceFlows { file: PathBuf },
    /// Rules with their packet and byte counters.
    DumpFlows,
    /// Megaflows installed in the datapath.
    DumpDpFlows,
    /// Port counters (received, sent, dropped, errors), as `ovs-ofctl dump-ports`.
    DumpPorts,
    /// Upcall handling summary.
    UpcallShow,
    /// Trace a flow through the daemon's current rules.
    Trace { flow: String },
    /// Run a revalidation round now and wait for it.
    Revalidate,
    /// Tracked connections, as `ovs-appctl dpctl/dump-conntrack [-s] [zone=N]`.
    DumpConntrack {
        /// `-s` (adds each entry's timeout) and/or `zone=N`.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Forget every tracked connection, or those of `zone=N`.
    FlushConntrack { zone: Option<String> },
    /// IP fragment reassembly: settings, fragments held, counters (as
    /// `ovs-appctl dpctl/ipf-get-status`).
    IpfGetStatus,
    /// The MAC learning table of NORMAL (as `ovs-appctl fdb/show`).
    FdbShow,
    /// Empty the MAC learning table (as `ovs-appctl fdb/flush`).
    FdbFlush,
    /// The MAC learning table's counters: learned, expired, evicted,
    /// moved (as `ovs-appctl fdb/stats-show`).
    FdbStats,
    /// Map Geneve options to fields, as `ovs-ofctl add-tlv-map`:
    /// `{class=0xffff,type=0,len=4}->tun_metadata0[,...]`.
    AddTlvMap { mappings: String },
    /// The Geneve TLV map, as `ovs-ofctl dump-tlv-map`.
    DumpTlvMap,
    /// Unmap Geneve options, as `ovs-ofctl del-tlv-map`: the mappings
    /// given (`{class=0xffff,type=0,len=4}->tun_metadata0[,...]`), or all
    /// with none; refused while a rule or group uses one of the fields.
    DelTlvMap { mappings: Option<String> },
    /// Add a group, as `ovs-ofctl add-group`:
    /// `group_id=1,type=select,bucket=output:1,bucket=output:2`.
    AddGroup { group: String },
    /// Add the groups of a file, one a line ("-" for standard input).
    AddGroups { file: PathBuf },
    /// Replace a group that exists, as `ovs-ofctl mod-group`.
    ModGroup { group: String },
    /// Delete group `group_id=N`, or every group (and the rules that send
    /// to them).
    DelGroups { group: Option<String> },
    /// The groups, as `ovs-ofctl dump-groups`.
    DumpGroups,
    /// The groups' and their buckets' packet and byte counts, as
    /// `ovs-ofctl dump-group-stats` (all, or `group_id=N`).
    DumpGroupStats { group: Option<String> },
    /// Add a meter, as `ovs-ofctl -O OpenFlow13 add-meter`:
    /// `meter=1 pktps burst stats bands=type=drop rate=100 burst_size=10`.
    AddMeter { meter: String },
    /// Replace a meter that exists, as `ovs-ofctl mod-meter`.
    ModMeter { meter: String },
    /// Delete meter `meter=N` (and the rules that use it).
    DelMeter { meter: String },
    /// Delete every meter, or `meter=N` (and the rules that use them).
    DelMeters { meter: Option<String> },
    /// The meters, as `ovs-ofctl dump-meters` (all, or `meter=N`).
    DumpMeters { meter: Option<String> },
    /// The meters' counters, as `ovs-ofctl meter-stats` (all, or `meter=N`).
    MeterStats { meter: Option<String> },
    /// Add a network interface as a port while the daemon runs, as
    /// `ovs-vsctl add-port`: `NAME [ofport=N] [type=internal]`.
    AddPort { port: Vec<String> },
    /// Remove a port while the daemon runs, as `ovs-vsctl del-port`.
    DelPort { name: String },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The userspace datapath's connection tracker under a stateful
    /// firewall: new connections/s, established packets/s, and the cost
    /// per packet next to a plain-forwarding baseline (last line JSON).
    Conntrack {
        #[arg(long, default_value_t = 2000)]
        connections: u32,
        /// Established data segments per connection.
        #[arg(long, default_value_t = 20)]
        per_conn: u32,
        /// Also write the frames of each phase (replay TSV) into this
        /// directory, as `tools/conntrack_sitting.py` feeds them to OVS.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Flow setup rate: a miss pass then a hit pass of a packet file.
    SetupRate {
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        packets: PathBuf,
        #[arg(long, default_value_t = 1)]
        handlers: usize,
        #[arg(long, default_value_t = upcalld::config::USERSPACE_BATCH_SIZE)]
        batch_size: usize,
        /// Where threads run, as the daemon's `[cpus] placement`: `auto`
        /// runs the feeder (the datapath's port thread) and the dpif-writer
        /// on the first CPU and the other threads on the rest; `none` leaves
        /// every thread to the kernel.
        #[arg(long, value_enum, default_value_t = upcalld::config::Placement::Auto)]
        placement: upcalld::config::Placement,
        /// Let the heap use transparent huge pages, as the daemon's
        /// `transparent_huge_pages = true` does.
        #[arg(long)]
        transparent_huge_pages: bool,
    },
}

fn read_file_arg(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

struct TraceArgs {
    rules: PathBuf,
    flows: Option<PathBuf>,
    flow: Option<String>,
    ports: Option<String>,
    config: Option<PathBuf>,
    fdb: Option<PathBuf>,
    setup: Option<PathBuf>,
    ct_next: Vec<String>,
    learn: bool,
}

fn run_trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let TraceArgs {
        rules,
        flows,
        flow,
        ports,
        config,
        fdb,
        setup,
        ct_next,
        learn,
    } = args;
    let ct_next = ct_next
        .iter()
        .map(|s| messages::parse::flow::parse_ct_next(s))
        .collect::<Result<Vec<u8>, String>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    let (rules, flows, flow) = (&rules, flows.as_ref(), flow.as_deref());
    let ports = ports
        .as_deref()
        .map(upcalld::trace::parse_port_list)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let config = config.map(|p| Config::load(&p)).transpose()?;
    let fdb = fdb.map(|p| read_file_arg(&p).map(|t| (p, t))).transpose()?;
    let mut cfg = upcalld::trace::bridge(
        ports,
        config.as_ref(),
        fdb.as_ref()
            .map(|(p, t)| (p.display().to_string(), t.as_str())),
    )?;
    cfg.side_effects = learn;
    cfg.may_learn = learn;
    let mut tlv = match &config {
        Some(c) => c.tlv_map()?,
        None => Default::default(),
    };
    let setup = match &setup {
        Some(path) => {
            let text = read_file_arg(path)?;
            upcalld::trace::apply_setup(&mut tlv, &path.display().to_string(), &text)?
        }
        None => Default::default(),
    };
    // Rules, flows and datapath actions name tun_metadataN through the
    // switch's TLV map.
    messages::tlv::with_map(&std::sync::Arc::new(tlv), || {
        trace_with(rules, setup, flows, flow, &cfg, &ct_next)
    })
}

fn trace_with(
    rules: &PathBuf,
    setup: upcalld::trace::Setup,
    flows: Option<&PathBuf>,
    flow: Option<&str>,
    cfg: &actors::xlate::XlateConfig,
    ct_next: &[u8],
) -> anyhow::Result<ExitCode> {
    let text = read_file_arg(rules)?;
    let (rules, warnings) = upcalld::rules::parse_text(&text, &rules.display().to_string())
        .map_err(anyhow::Error::msg)?;
    for w in warnings {
        eprintln!("upcalld: {w}");
    }
    let mut tables = actors::tables::Tables::from_rules(rules);
    setup.apply_to(&mut tables)?;
    // As OVS refuses a flow mod to a group or meter that does not exist.
    let all: Vec<_> = tables.rules().iter().map(|e| e.rule.clone()).collect();
    upcalld::daemon::refuse_missing_groups(&all, &tables).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(path) = flows {
        print!(
            "{}",
            upcalld::trace::trace_lines(&tables, &read_file_arg(path)?, cfg)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = upcalld::trace::trace_ct(&tables, flow.unwrap_or_default(), cfg, ct_next)
        .map_err(|e| anyhow::anyhow!(e))?;
    print!("{}", upcalld::trace::format_trace(&r));
    Ok(ExitCode::SUCCESS)
}

fn ctl(socket: &std::path::Path, cmd: CtlCmd) -> anyhow::Result<ExitCode> {
    let text = |command, body: String| (Header::new(command), Body::Text(body));
    let file = |command, path: PathBuf| -> anyhow::Result<(Header, Body)> {
        let origin = if path.as_os_str() == "-" {
            "(standard input)".to_string()
        } else {
            path.display().to_string()
        };
        let body = if path.as_os_str() == "-" {
            Body::Stdin
        } else {
            // The file streams to the daemon as it is read.
            Body::File(std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?)
        };
        Ok((
            Header {
                origin: Some(origin),
                ..Header::new(command)
            },
            body,
        ))
    };
    let (header, body) = match cmd {
        CtlCmd::AddFlow { rule } => text(Command::AddFlow, rule),
        CtlCmd::AddFlows { file: path } => file(Command::AddFlows, path)?,
        CtlCmd::DelFlows { strict, r#match } => {
            let (mut h, b) = text(Command::DelFlows, r#match.unwrap_or_default());
            h.strict = strict;
            (h, b)
        }
        CtlCmd::ModFlows { strict, flow } => {
            let (mut h, b) = text(Command::ModFlows, flow);
            h.strict = strict;
            (h, b)
        }
        CtlCmd::ReplaceFlows { file: path } => file(Command::ReplaceFlows, path)?,
        CtlCmd::DumpFlows => text(Command::DumpFlows, String::new()),
        CtlCmd::DumpDpFlows => text(Command::DumpDpFlows, String::new()),
        CtlCmd::DumpPorts => text(Command::DumpPorts, String::new()),
        CtlCmd::UpcallShow => text(Command::UpcallShow, String::new()),
        CtlCmd::Trace { flow } => text(Command::Trace, flow),
        CtlCmd::Revalidate => text(Command::Revalidate, String::new()),
        CtlCmd::DumpConntrack { args } => text(Command::DumpConntrack, args.join(" ")),
        CtlCmd::FlushConntrack { zone } => text(Command::FlushConntrack, zone.unwrap_or_default()),
        CtlCmd::IpfGetStatus => text(Command::IpfGetStatus, String::new()),
        CtlCmd::FdbShow => text(Command::FdbShow, String::new()),
        CtlCmd::FdbFlush => text(Command::FdbFlush, String::new()),
        CtlCmd::FdbStats => text(Command::FdbStats, String::new()),
        CtlCmd::AddTlvMap { mappings } => text(Command::AddTlvMap, mappings),
        CtlCmd::DumpTlvMap => text(Command::DumpTlvMap, String::new()),
        CtlCmd::DelTlvMap { mappings } => text(Command::DelTlvMap, mappings.unwrap_or_default()),
        CtlCmd::AddGroup { group } => text(Command::AddGroups, group),
        CtlCmd::AddGroups { file: path } => file(Command::AddGroups, path)?,
        CtlCmd::ModGroup { group } => text(Command::ModGroup, group),
        CtlCmd::DelGroups { group } => text(Command::DelGroups, group.unwrap_or_default()),
        CtlCmd::DumpGroups => text(Command::DumpGroups, String::new()),
        CtlCmd::DumpGroupStats { group } => {
            text(Command::DumpGroupStats, group.unwrap_or_default())
        }
        CtlCmd::AddMeter { meter } => text(Command::AddMeters, meter),
        CtlCmd::ModMeter { meter } => text(Command::ModMeter, meter),
        CtlCmd::DelMeter { meter } => text(Command::DelMeters, meter),
        CtlCmd::DelMeters { meter } => text(Command::DelMeters, meter.unwrap_or_default()),
        CtlCmd::DumpMeters { meter } => text(Command::DumpMeters, meter.unwrap_or_default()),
        CtlCmd::MeterStats { meter } => text(Command::MeterStats, meter.unwrap_or_default()),
        CtlCmd::AddPort { port } => text(Command::AddPort, port.join(" ")),
        CtlCmd::DelPort { name } => text(Command::DelPort, name),
    };
    let reply = match body {
        Body::Text(t) => control::call_with(socket, &header, &mut t.as_bytes())?,
        Body::File(mut f) => control::call_with(socket, &header, &mut f)?,
        Body::Stdin => control::call_with(socket, &header, &mut std::io::stdin().lock())?,
    };
    match reply {
        Ok(r) => {
            for w in &r.warnings {
                eprintln!("upcalld: {w}");
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), r.output.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("upcalld: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where a request's body comes from.
enum Body {
    Text(String),
    File(std::fs::File),
    Stdin,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { config } => {
            let loaded = match &config {
                Some(path) => Config::load(path).map_err(anyhow::Error::from),
                None => Ok(Config::default()),
            };
            loaded
                .and_then(|c| upcalld::daemon::run(c, config))
                .map(|()| ExitCode::SUCCESS)
        }
        Cmd::Ctl { socket, command } => ctl(&socket, command),
        Cmd::Bench {
            bench:
                BenchCmd::Conntrack {
                    connections,
                    per_conn,
                    export,
                },
        } => upcalld::bench_conntrack::conntrack(connections, per_conn, export.as_deref()).map(|r| {
            println!(
                "{} connections: {:.0} new/s; {} established packets: {:.0}/s, {:.0} ns each, {:.0} ns more than plain forwarding ({} tracked, {} invalid, {} forwarded)",
                r.connections,
                r.connections as f64 / r.new_s,
                r.established_packets,
                r.established_packets as f64 / r.established_s,
                r.established_s / r.established_packets as f64 * 1e9,
                (r.established_s - r.baseline_s) / r.established_packets as f64 * 1e9,
                r.tracked,
                r.invalid,
                r.forwarded,
            );
            println!("{}", r.json());
            ExitCode::SUCCESS
        }),
        Cmd::Bench {
            bench:
                BenchCmd::SetupRate {
                    rules,
                    packets,
                    handlers,
                    batch_size,
                    placement,
                    transparent_huge_pages,
                },
        } => {
            let opts = upcalld::bench::SetupRateOptions {
                handlers,
                batch_size,
                placement,
                transparent_huge_pages,
            };
            upcalld::bench::setup_rate(&rules, &packets, &opts).map(|r| {
                println!(
                    "packets {}  upcalls {}  megaflows {}  (threads placed: {:?}; transparent huge pages: {})",
                    r.packets,
                    r.upcalls,
                    r.megaflows,
                    opts.placement,
                    if opts.transparent_huge_pages { "on" } else { "off" }
                );
                println!(
                    "miss pass {:.3} s  hit pass {:.3} s  {:.3} us/upcall  {:.0} upcalls/s",
                    r.miss_pass_s,
                    r.hit_pass_s,
                    r.us_per_upcall(),
                    r.upcalls_per_s()
                );
                let cpu: Vec<String> = r
                    .miss_pass_cpu
                    .iter()
                    .map(|(name, s)| format!("{name} {:.1} ms", s * 1e3))
                    .collect();
                println!(
                    "cpu in the miss pass: {}; resident memory {:+.1} MiB",
                    cpu.join(", "),
                    r.miss_pass_rss_growth as f64 / (1 << 20) as f64
                );
                println!("{}", r.json());
                ExitCode::SUCCESS
            })
        }
        Cmd::Trace {
            rules,
            flows,
            flow,
            ports,
            ct_next,
            config,
            fdb,
            learn,
            setup,
        } => run_trace(TraceArgs {
            rules,
            flows,
            flow,
            ports,
            config,
            fdb,
            setup,
            ct_next,
            learn,
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("upcalld: {e:#}");
        ExitCode::FAILURE
    })
}
