//! One lab migration of the running guest, without migverify attached:
//! QEMU's own account as JSON on stdout. The measuring tool behind the
//! figures in docs/lab.md ("The running guest"), until `migverify lab`
//! takes these options itself. As root, under the lab lock:
//!
//! ```sh
//! flock /tmp/migverify-lab.lock cargo run --example lab_guest -- \
//!     --dirty-rate 40 --working-set 64 --memory 256 --bandwidth 100
//! ```

use std::time::Duration;

use clap::Parser;
use verifier::lab::{self, Guest, LabConfig, Scenario};

#[derive(Parser)]
struct Args {
    /// MiB/s the guest rewrites (0: a running, idle guest); a list runs
    /// one migration per rate on the one lab.
    #[arg(long, value_delimiter = ',', default_value = "25")]
    dirty_rate: Vec<u64>,
    /// MiB of the working set the guest rewrites.
    #[arg(long, default_value_t = 64)]
    working_set: u64,
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// QEMU's max-bandwidth, MiB/s (0: unlimited).
    #[arg(long, default_value_t = 100)]
    bandwidth: u64,
    #[arg(long, default_value_t = 8)]
    multifd: u8,
    #[arg(long)]
    no_tls: bool,
    #[arg(long)]
    auto_converge: bool,
    #[arg(long)]
    post_copy: bool,
    /// A paused guest instead (the lab's default one).
    #[arg(long)]
    paused: bool,
    #[arg(long, default_value_t = 40)]
    timeout: u64,
    /// Migrations to run on the one lab.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config_for = |dirty_rate_mib_s| LabConfig {
        memory_mib: args.memory,
        multifd_channels: args.multifd,
        tls: !args.no_tls,
        bandwidth_bytes: (args.bandwidth > 0).then_some(args.bandwidth << 20),
        timeout: Duration::from_secs(args.timeout),
        guest: if args.paused {
            Guest::Paused
        } else {
            Guest::Running {
                dirty_rate_mib_s,
                working_set_mib: args.working_set,
            }
        },
        auto_converge: args.auto_converge,
        post_copy: args.post_copy,
        ..Scenario::Secondary.config()
    };
    let progress = |line: &str| eprintln!("lab: {line}");
    lab::up(&config_for(args.dirty_rate[0]), &progress)?;
    let result = (|| {
        for &rate in &args.dirty_rate {
            for _ in 0..args.runs {
                let config = config_for(rate);
                let outcome = lab::migrate(&config, &progress, &mut |_| Ok(()))?;
                let run = serde_json::json!({
                    "dirty_rate_mib_s": rate,
                    "bandwidth_mib_s": args.bandwidth,
                    "auto_converge": args.auto_converge,
                    "post_copy": args.post_copy,
                    "qemu": outcome,
                });
                println!("{run}");
            }
        }
        anyhow::Ok(())
    })();
    lab::down()?;
    result
}
