//! The `migverify` binary as a user meets it: help, errors, exit codes.

mod support;

use std::process::{Command, Output};

use support::{privileged, VethPair};

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_explains_the_tool_and_its_exit_codes() {
    let out = migverify(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("migration network"), "{help}");
    assert!(
        help.contains("0 pass, 1 fail, 2 usage or input error, 3 warning"),
        "{help}"
    );
    assert!(help.contains("counters"), "{help}");
}

#[test]
fn a_malformed_interface_spec_is_a_usage_error() {
    let out = migverify(&["counters", "-i", "sideways:eth0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown role `sideways`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_interface_is_one_clear_line_and_exit_2() {
    if !privileged("a_missing_interface_is_one_clear_line_and_exit_2") {
        return;
    }
    let pair = VethPair::new();
    let out = migverify(&[
        "counters",
        "-i",
        &format!("nosuch0@{}", pair.a.name),
        "-d",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "migverify: no interface nosuch0 in network namespace {}\n",
            pair.a.name
        )
    );
}

#[test]
fn counters_reports_json_for_each_interface() {
    if !privileged("counters_reports_json_for_each_interface") {
        return;
    }
    let pair = VethPair::new();
    let spec_a = format!("migration:va@{}", pair.a.name);
    let spec_b = format!("primary:vb@{}", pair.b.name);
    let out = migverify(&[
        "counters", "-i", &spec_a, "-i", &spec_b, "-d", "0.2", "-o", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let rows = rows.as_array().expect("one row per interface");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["iface"], "va");
    assert_eq!(rows[0]["role"], "migration");
    assert_eq!(rows[1]["netns"], pair.b.name.as_str());
    assert_eq!(rows[1]["role"], "primary");
    assert_eq!(rows[1]["mode"], "tcx");
}

/// The arguments the checkup's client pod runs `bench run` with
/// (checkup/pods.rs pins them) are ones migverify accepts.
#[test]
fn the_checkup_clients_arguments_parse() {
    use clap::Parser as _;
    let argv =
        "migverify bench run --peer 10.200.5.12:9440 --tls-ca-pem PEM --token t0k --duration 10 \
                --streams 8 --vm-memory 2147483648 --completion-timeout-per-gib 20 --output json";
    verifier::cli::Cli::try_parse_from(argv.split_whitespace()).unwrap();
    let server = "migverify bench serve --listen [::]:9440 --tls-self-signed --token t0k";
    verifier::cli::Cli::try_parse_from(server.split_whitespace()).unwrap();
    // The CA is PEM text, which starts with dashes.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    verifier::cli::Cli::try_parse_from([
        "migverify",
        "bench",
        "run",
        "--peer",
        "10.200.5.12:9440",
        "--tls-ca-pem",
        pem,
    ])
    .unwrap();
}

/// Every command's `--help` ends with two or three examples, and every
/// example is a command line migverify accepts. Hidden commands are the
/// lab's own processes (`lab wan`), started by `lab up`, not by people.
#[test]
fn every_commands_help_ends_with_examples_that_parse() {
    use clap::{CommandFactory as _, Parser as _};
    fn walk(command: &clap::Command, path: Vec<String>, out: &mut Vec<(String, String)>) {
        for sub in command
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        {
            let mut path = path.clone();
            path.push(sub.get_name().to_string());
            let help = sub.clone().render_long_help().to_string();
            out.push((path.join(" "), help));
            walk(sub, path, out);
        }
    }
    let mut helps = Vec::new();
    walk(&verifier::cli::Cli::command(), Vec::new(), &mut helps);
    assert!(helps.len() >= 17, "{}", helps.len());
    for (command, help) in helps {
        let (_, examples) = help
            .rsplit_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("`migverify {command} --help` has no examples:\n{help}"));
        // Continued lines joined; each `migverify ...` of a pipeline or list.
        let joined = examples.replace("\\\n", " ");
        let lines: Vec<&str> = joined
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split("&&"))
            .filter_map(|l| {
                l.find("migverify ")
                    .map(|at| l[at..].trim_end_matches(['&', ' ']))
            })
            .collect();
        assert!(
            (2..=6).contains(&lines.len()),
            "`migverify {command} --help`: {} examples",
            lines.len()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("migverify {command}"))),
            "`migverify {command} --help` shows no `migverify {command}`"
        );
        for line in lines {
            let argv = line.split_whitespace().map(|w| w.trim_matches('"'));
            if let Err(error) = verifier::cli::Cli::try_parse_from(argv) {
                panic!("`migverify {command} --help`: `{line}` does not parse: {error}");
            }
        }
    }
}
