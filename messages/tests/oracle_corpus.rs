//! The parsers against the OVS oracle corpus (shared/oracle): every
//! `rules.of13` parses and prints back as `rules.dump` shows it, every
//! `flows.txt` line parses, and the flows OVS rejects are rejected with
//! OVS's message.
//!
//! The corpus is found through `UPCALLD_ORACLE_DIR`, or as `shared/oracle`
//! beside one of the directories above this crate.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use messages::format::ofp_rule::format_rule;
use messages::parse::flow::parse_trace_flow;
use messages::parse::rules::parse_rules;

fn oracle_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPCALLD_ORACLE_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/oracle"))
        .find(|p| p.join("cases.tsv").is_file())
        .expect("oracle corpus not found: set UPCALLD_ORACLE_DIR or put it at ../shared/oracle")
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for tier in fs::read_dir(oracle_dir()).expect("read oracle dir") {
        let tier = tier.expect("dir entry").path();
        if !tier.is_dir() {
            continue;
        }
        for case in fs::read_dir(&tier).expect("read tier dir") {
            let case = case.expect("dir entry").path();
            if case.join("rules.of13").is_file() {
                dirs.push(case);
            }
        }
    }
    dirs.sort();
    assert!(
        dirs.len() >= 37,
        "expected the 37 oracle cases, found {}",
        dirs.len()
    );
    dirs
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rule_file_parses_and_prints_as_ovs_dumps_it() {
    let mut differences = Vec::new();
    let mut n_rules = 0;
    for case in case_dirs() {
        let rules_path = case.join("rules.of13");
        let rules = parse_rules(&read(&rules_path))
            .unwrap_or_else(|e| panic!("{}", e.with_file(rules_path.display().to_string())));
        n_rules += rules.len();
        let ours: BTreeSet<String> = rules.iter().map(format_rule).collect();
        let theirs: BTreeSet<String> = read(&case.join("rules.dump"))
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        for line in ours.symmetric_difference(&theirs) {
            let side = if ours.contains(line) { "ours" } else { "ovs " };
            differences.push(format!("{}: {side}: {line}", case.display()));
        }
    }
    assert!(n_rules > 900, "only {n_rules} rules parsed");
    assert!(
        differences.is_empty(),
        "rules.dump differs:\n{}",
        differences.join("\n")
    );
}

#[test]
fn every_flow_parses_or_fails_as_ovs_fails() {
    let mut n_flows = 0;
    let mut n_errors = 0;
    for case in case_dirs() {
        let flows = read(&case.join("flows.txt"));
        let expected = read(&case.join("expected.tsv"));
        let expected: Vec<Vec<&str>> = expected.lines().map(|l| l.split('\t').collect()).collect();
        for (i, flow) in flows.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            n_flows += 1;
            let exp = &expected[i];
            assert_eq!(exp[0], flow, "{}: expected.tsv out of step", case.display());
            match (parse_trace_flow(flow), exp.get(1)) {
                (Err(e), Some(&"ERROR")) => {
                    n_errors += 1;
                    assert_eq!(
                        format!("Bad openflow flow syntax: {e}"),
                        exp.get(3).copied().unwrap_or_default(),
                        "{}",
                        case.display()
                    );
                }
                (Ok(_), Some(&"ERROR")) => panic!("{}: OVS rejects {flow}", case.display()),
                (Err(e), _) => panic!("{}: {e}", case.display()),
                (Ok(_), _) => {}
            }
        }
    }
    assert_eq!(n_flows, 1449);
    assert_eq!(n_errors, 7);
}
