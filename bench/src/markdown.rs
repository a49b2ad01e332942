//! docs/benchmarks.md, written from a run's results: every figure beside
//! its target, and where a target is missed, by how much and why.

use std::fmt::Write as _;

use crate::{
    interval::Interval,
    labbench::Variant,
    soak::SoakSample,
    targets::{self, History},
    Results,
};

/// An interval as the page shows it.
fn ci(i: &Interval, digits: usize) -> String {
    format!(
        "{:.d$} [{:.d$}, {:.d$}]",
        i.median,
        i.low,
        i.high,
        d = digits
    )
}

/// "met" only when the interval's far end meets the target.
fn interval_verdict(met: bool, i: &Interval, target: f64, digits: usize) -> String {
    if met {
        "met".into()
    } else if (i.low - target) * (i.high - target) <= 0.0 {
        format!(
            "**not met**: the interval holds the target ({} rounds)",
            i.rounds
        )
    } else {
        format!(
            "**missed** by {:.d$}",
            (i.median - target).abs(),
            d = digits
        )
    }
}

fn verdict(met: bool, gap: String) -> String {
    if met {
        "met".into()
    } else {
        format!("**missed** by {gap}")
    }
}

/// Each per-packet figure as a fraction of f357094's in the same rounds,
/// beside the fraction its target asked of f357094 where it was set: what
/// the targets mean on a machine that runs the same code at another speed.
fn relative_per_packet(out: &mut String, r: &Results) {
    let rows: Vec<String> = r
        .per_packet
        .iter()
        .filter_map(|s| {
            let reference = s
                .builds
                .iter()
                .find(|b| b.name == crate::reference::COMMIT)?;
            let asked = crate::targets::per_packet_ns(&s.frame)? as f64
                / crate::targets::per_packet_set_against_ns(&s.frame)? as f64;
            let now = s.above_floor_ns as f64 / reference.above_floor_ns.max(1) as f64;
            Some(format!(
                "{} {now:.2} (the target asked {asked:.2})",
                s.frame
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nAgainst f357094's programs in the same rounds, above the floor: {}. A fraction at or below the one \
         asked would meet the target scaled to this machine; the table above judges the absolute figures.",
        rows.join("; ")
    );
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn render(r: &Results, history: &History) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (as root; `cargo xtask bench --quick` for a smoke run). Every figure is \
         measured side by side with its baseline in the same run, alternating, and quoted as a median or a \
         ratio: these machines are shared and noisy. The raw figures of every run are in \
         `bench/results/latest.json`. `cargo xtask bench --only PART` (per-packet, attach, flood, migration, \
         hooks-in-place, iperf3, iperf3-points, footprint) runs one part and prints its figures; `--only agent-soak` runs the \
         agent's soak and adds it to the latest run's figures and this page; `target/release/bench --render \
         bench/results/latest.json` writes this page again from a run's figures.\n\n\
         Run: {} on {} ({} CPUs, {:.0} GiB), kernel {}{}.\n",
        m.date,
        m.cpu_model,
        m.cpus,
        m.memory_gib,
        m.kernel,
        if r.quick { ", **quick run**: few rounds, not figures to quote" } else { "" }
    );
    provenance_section(&mut out, r);
    history_section(&mut out, history);

    out.push_str(
        "## Per-packet cost\n\nBPF_PROG_TEST_RUN, mean ns per packet over 1e6 repeats, median of the rounds; the \
         empty TC program is the floor. The observer runs with what a verify run loads (two endpoints, two \
         CIDRs); a \"known migration segment\" belongs to a flow already in the flow table and carries TCP \
         timestamps. The observer is a hook's own program: it counts the frame, parses it, and accounts a \
         segment of a flow it met last on this CPU, or its CPU's flow cache knows, in place; whatever else may be a migration's (a new flow, one \
         the cache forgot, IPv6 extension headers) goes on by tail call to the shared classifier, and unrelated \
         traffic leaves at the prefilters. \"classifier alone\" runs the classifier without the hook's program. The baseline is the naive per-CPU LRU \
         5-tuple counter (`bench-baseline`). The targets were set on a machine where f357094's programs took \
         18 / 18 / 18 / 14 / 7 ns above the floor; the last column is what they take on this one, in the same \
         rounds (built from that commit, as for the in-place target).\n\n\
         | frame | empty | observer | above floor | target | | classifier alone, above floor | naive baseline above floor | f357094, above floor |\n\
         | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n",
    );
    let mut per_packet_missed = false;
    for s in &r.per_packet {
        let (target, judged) = match s.target_above_floor_ns {
            Some(target) => {
                let met = s.above_floor_ns <= target;
                per_packet_missed |= !met;
                let gap = format!("{} ns", s.above_floor_ns.saturating_sub(target));
                (format!("<= {target}"), verdict(met, gap))
            }
            None => ("-".to_string(), "reported".to_string()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.frame,
            s.empty_median_ns,
            s.observer_median_ns,
            s.above_floor_ns,
            target,
            judged,
            s.classifier_median_ns.saturating_sub(s.empty_median_ns),
            s.baseline_above_floor_ns,
            s.builds
                .iter()
                .find(|b| b.name == crate::reference::COMMIT)
                .map_or("-".to_string(), |b| b.above_floor_ns.to_string())
        );
    }
    relative_per_packet(&mut out, r);
    out.push_str(
        "\nA kept flow's segment is found through its CPU's flow cache: the two slots a hash of its ports and hook \
         picks name the flow-table entries of the last two flows seen there, and five word compares confirm the key; \
         before that, the hook tries the flow it met last on this CPU. BPF_PROG_TEST_RUN \
         repeats one frame, so every repeat after the first takes that path; a segment that misses the cache pays \
         for the hash lookup in the index table as well (about 23 ns for an IPv4 key on this kind of machine). How \
         often segments miss in a real migration is measured below (the kernel's run-time statistics).\n\n\
         A repeated frame is also the same sequence again, so to the observer every repeat after the first is a \
         retransmission (counted as such), not the new payload a migration stream mostly carries: that is how \
         the targets were set, and how the known-segment rows are still measured. The row \
         \"migration segment with new payload\" measures the other path: one run per BPF_PROG_TEST_RUN call, \
         each call's segment taking up where the last ended (20 000 calls, the median), against the empty \
         program measured the same way. One run per call times a single run with the kernel's clock and runs \
         after the system call's own work, with colder caches than a million repeats: its floor is higher and \
         its figure is not comparable with the rows above it, only with f357094's in the same row.\n",
    );
    if per_packet_missed {
        out.push_str(
            "\nA target above is missed. Where the time went was measured with A/B builds of the programs on \
             f357094 (`--build`, per-packet, in the same rounds; bench/results/parts/2026-12-04T181002Z-PerPacket.json), \
             each stage including the ones before it: counting the frame alone cost 3 ns above the floor, a tail call \
             to an empty classifier 7-9, parsing Ethernet, IP and TCP with the prefilters 15-21, the flow lookup \
             22-24, the whole observer 28-31 on a known segment. That parser read every header field a byte at a \
             time (LLVM's BPF target assumes strict alignment); it now reads each field with one load \
             (docs/architecture.md, \"Packet reads in words\"), which took the known IPv4 segment from 15 to 10-11 ns \
             and unrelated TCP from 13 to 10-11 in the same rounds (two builds of it) (bench/results/parts/2026-12-05T151407Z-PerPacket.json). \
             On the machine of 2026-12-06, where f357094's programs take twice what they took where the targets \
             were set, the same kind of A/B run (bench/results/parts/2026-12-06T021912Z-PerPacket.json, known IPv4 \
             segment, each stage including the ones before it): counting 0 ns, parsing 4, the flow-cache lookup 9, \
             accounting with plain adds 13, with the locked adds every CPU made until 68aa7bf 28; the CPU shares \
             that replaced them give 19-20 (checking and adding to this CPU's share costs some 6 ns more than plain \
             adds would, against 15 for the locked adds). Single rounds on this shared machine scatter by several \
             nanoseconds: compare the rounds in `bench/results/latest.json` before reading a miss of one.\n",
        );
    }

    if let Some(s) = r.per_packet.first().filter(|s| s.empty_stats_median_ns > 0) {
        let _ = writeln!(
            out,
            "\nWhat the kernel's run-time statistics (`BPF_ENABLE_STATS`, on for the in-place figures below) cost \
             every program run: the empty program takes {} ns with them on against {} ns off, {} ns more (two clock \
             reads and the per-CPU sums). The in-place floor below includes that, for every variant alike.",
            s.empty_stats_median_ns,
            s.empty_median_ns,
            s.empty_stats_median_ns.saturating_sub(s.empty_median_ns)
        );
    }

    let mb = &r.migration;
    let _ = writeln!(
        out,
        "\n## A real migration in the lab\n\n{} MiB of random guest memory, {} multifd channels, TLS {}, bandwidth \
         unlimited, segmentation offloads off (MTU-sized packets on the wire); {} rounds, the variants alternating \
         in each. migverify is attached on every observation point with the endpoints loaded before the first \
         byte and its collector running; tcpdump writes every interface to /dev/null; the pnet capture reads \
         every interface through AF_PACKET.\n\n\
         | variant | runs | median ms | min-max ms | ratio to unobserved, median [95% CI] | median Mbit/s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |",
        mb.memory_mib,
        mb.multifd_channels,
        if mb.tls { "on" } else { "off" },
        mb.summary.first().map_or(0, |s| s.runs)
    );
    for s in &mb.summary {
        let _ = writeln!(
            out,
            "| {:?} | {} | {} | {}-{} | {} | {:.0} |",
            s.variant,
            s.runs,
            s.median_ms,
            s.min_ms,
            s.max_ms,
            s.ratio
                .as_ref()
                .map_or(format!("{:.3}", s.median_ratio), |i| ci(i, 3)),
            s.median_throughput_mbps
        );
    }
    if let Some(mv) = mb.summary.iter().find(|s| s.variant == Variant::Migverify) {
        let _ = writeln!(
            out,
            "\nTarget: migverify's ratio <= {}, the interval's upper end included (a ratio per round against \
             the unobserved migration of the same round, bootstrap over the rounds): {}.",
            targets::MIGRATION_RATIO,
            match &mv.ratio {
                Some(i) => interval_verdict(
                    targets::at_most(i, targets::MIGRATION_RATIO),
                    i,
                    targets::MIGRATION_RATIO,
                    3
                ),
                None => verdict(
                    mv.median_ratio <= targets::MIGRATION_RATIO,
                    format!("{:.3}", mv.median_ratio - targets::MIGRATION_RATIO)
                ),
            }
        );
        // What the per-packet cost alone predicts: every MTU-sized data
        // segment crosses four observed hooks, and about one ACK per two
        // segments crosses them back.
        let unobserved = mb.summary.iter().find(|s| s.variant == Variant::Unobserved);
        let programs = mb
            .summary
            .iter()
            .find(|s| s.variant == Variant::ProgramsOnly);
        let per_packet = r.per_packet.first().map_or(0, |s| s.above_floor_ns);
        if let (Some(base), Some(programs), Some(run)) = (unobserved, programs, mb.runs.first()) {
            let segments = run.transferred_bytes as f64 / 1448.0;
            let hook_runs = segments * 4.0 * 1.5;
            let predicted_ms = hook_runs * per_packet as f64 / 1e6;
            let _ = writeln!(
                out,
                "\nWhere the time goes, measured in the same rounds: with migverify's programs on every hook and \
                 nothing reading them (`ProgramsOnly`) the ratio is {:.3}; with the collector reading them too, {:.3}. \
                 {} The per-packet cost alone predicts {:.0} ms of CPU over the migration ({:.0} k \
                 segments x 4 hooks, ACKs included, x {per_packet} ns), {:.1}% of the unobserved {} ms. The lab's \
                 two cores are busy with QEMU on both ends, TLS and the kernel's forwarding, so every nanosecond \
                 spent in a hook is a nanosecond the migration waits for.",
                programs.median_ratio,
                mv.median_ratio,
                if (mv.median_ratio - programs.median_ratio).abs() < 0.05 {
                    format!(
                        "The difference, {:+.3}, is small against the spread of the rounds (min-max above): the \
                         bulk of the cost is the kernel side's.",
                        mv.median_ratio - programs.median_ratio
                    )
                } else {
                    "The collector's share is the difference.".to_string()
                },
                predicted_ms,
                segments / 1000.0,
                predicted_ms / base.median_ms as f64 * 100.0,
                base.median_ms,
            );
        }
    }

    in_place_section(&mut out, r);
    let _ = writeln!(
        out,
        "\n## iperf3 over the migration network\n\n{} s per run, attached (every observation point, the migration \
         CIDR loaded, so iperf3's flows take the full classified path) against not, in paired rounds (the order \
         flipped every other round); the ratio is taken within each round, its 95% interval by bootstrap over the \
         rounds. Segmentation offloads off puts MTU-sized packets on the wire, the most per-packet work: the \
         target is about that. With offloads on (the default on real NICs: packets up to 64 KiB) the figures \
         are reported.\n\n\
         | offloads | streams | rounds | unobserved Mbit/s | attached Mbit/s | ratio, median [95% CI] | target >= {} |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        r.iperf3.seconds,
        targets::IPERF_RATIO
    );
    for s in &r.iperf3.summary {
        let (ratio, judged) = match &s.ratio_interval {
            Some(i) => (
                ci(i, 3),
                interval_verdict(
                    targets::at_least(i, targets::IPERF_RATIO),
                    i,
                    targets::IPERF_RATIO,
                    3,
                ),
            ),
            None => (
                format!("{:.3}", s.ratio),
                verdict(
                    s.ratio >= targets::IPERF_RATIO,
                    format!("{:.3}", targets::IPERF_RATIO - s.ratio),
                ),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {ratio} | {} |",
            if s.offloads { "on" } else { "off" },
            s.streams,
            s.ratio_interval.as_ref().map_or(0, |i| i.rounds),
            s.unobserved_mbps,
            s.attached_mbps,
            if s.offloads {
                "reported, no target".to_string()
            } else {
                judged
            }
        );
    }
    // What the per-packet cost predicts: each MTU-sized segment runs the
    // observers on node B's two ingress hooks, in the softirq of the core
    // that limits the stream (its ACK's runs fall on the other).
    let per_packet = r.per_packet.first().map_or(0, |s| s.above_floor_ns);
    if let Some(one) = r
        .iperf3
        .summary
        .iter()
        .find(|s| s.streams == 1 && !s.offloads)
    {
        let segments_per_s = one.attached_mbps * 1e6 / 8.0 / 1448.0;
        let runs_per_segment = 2.0;
        let core_share = segments_per_s * runs_per_segment * per_packet as f64 / 1e9;
        let _ = writeln!(
            out,
            "\nWhy: iperf3 keeps the lab's two cores busy (segmentation offloads off: {:.0} k MTU-sized segments a \
             second with one stream), and each segment runs the observers twice on the core that limits the stream: \
             on node B's two ingress hooks (its ACK's runs fall on the other core, below). At {per_packet} ns a run \
             above the hook's floor that is {:.0}% of that core, and the floor itself costs about as much again \
             (below).",
            segments_per_s / 1000.0,
            core_share * 100.0,
        );
        out.push_str(IPERF_BY_POINTS);
    }

    let f = &r.footprint;
    let attach = median(&r.attach.total_ms);
    let _ = writeln!(
        out,
        "\n## migverify's own footprint\n\n\
         | figure | value | target | |\n| --- | ---: | ---: | --- |\n\
         | CPU of `verify` with {} migrations ({} connections, {:.0} s) | {:.2}% of one core | < 2% | {} |\n\
         | peak RSS of that process | {:.1} MiB | < 40 MiB | {} |\n\
         | time to load and attach 6 hooks (median) | {:.1} ms | < 250 ms | {} |\n",
        f.migrations,
        f.connections,
        f.seconds,
        f.cpu_percent_of_one_core,
        verdict(f.cpu_percent_of_one_core < 2.0, format!("{:.2} points", f.cpu_percent_of_one_core - 2.0)),
        f.peak_rss_mib,
        verdict(f.peak_rss_mib < 40.0, format!("{:.1} MiB", f.peak_rss_mib - 40.0)),
        attach,
        verdict(attach < 250.0, format!("{:.0} ms", attach - 250.0)),
    );
    let _ = writeln!(
        out,
        "That verify process saw {} connections and judged them {}{}.\n",
        f.connections_reported,
        f.verdict,
        if f.reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.reasons.join(", "))
        }
    );
    let (total, object, classifier, hooks) = (
        median(&r.attach.total_ms),
        median(&r.attach.load_object_ms),
        median(&r.attach.classifier_ms),
        median(&r.attach.hook_programs_ms),
    );
    let _ = writeln!(
        out,
        "Where these go, measured in the same run:\n\n\
         - attach: {total:.0} ms in all, until every hook is attached and the classifier in place. Loading \
           the object (maps, BTF) takes {object:.0} ms; the {} small hook programs (one ingress and one \
           egress per hook, the slot compiled in, which count, account kept flows and tail-call the classifier \
           for the rest) {hooks:.0} ms. \
           Then two things run in parallel: the kernel verifies the shared classifier ({classifier:.0} ms \
           alone), and the hooks are attached, one thread per interface. Each tcx link waits out an RCU \
           grace period under the kernel's rtnl lock, so the links are made one after another whatever the \
           threads: with the verifier's time, these grace periods are most of what is left.\n\
         - memory: {:.1} MiB of the peak is there one second after start, attached and before any traffic \
           (the embedded object parsed, the maps and the ring buffer mapped); the rest grows with the \
           connections' histories and the report.\n\
         - CPU: the collector reads the flow table every 100 ms: {} entries here.\n",
        r.attach.hook_programs,
        f.rss_attached_mib,
        f.flow_entries
    );

    let fl = &r.flood;
    let _ = writeln!(
        out,
        "## The flow table under a flood\n\n{} distinct flows inside the migration CIDR through the classifier \
         ({:.1} s): {} kept (the flow table holds 65 536), {} segments counted as `flow_table_full`, never silent. \
         The migration flow made before the flood is {} ({} packets counted). Target: no lost migration flow, \
         evictions counted: {}.",
        fl.flows_offered,
        fl.seconds,
        fl.flows_kept,
        fl.flow_table_full,
        if fl.migration_flow_kept { "still kept and counted" } else { "LOST" },
        fl.migration_flow_packets,
        verdict(fl.migration_flow_kept && fl.flow_table_full > 0, "a lost flow or an uncounted loss".into())
    );
    if let Some(soak) = &r.soak {
        soak_section(&mut out, soak);
    }
    out
}

/// One figure of a soak sample, as a number.
type Figure = fn(&SoakSample) -> f64;

/// The agent's soak: samples at the start, the quarters and the end, and
/// whether each figure levelled off: the second half's peak within 10% of
/// the first half's (BPF links exactly), the samples taken mid-restart
/// (nothing attached) left out of the comparison.
fn soak_section(out: &mut String, s: &crate::soak::SoakBench) {
    let _ = writeln!(
        out,
        "\n## The agent over {} migrations\n\n\
         `cargo xtask bench --only agent-soak` ({}, kernel {}): `migverify agent` on the lab's node A against the \
         replay API server, {} migrations in {:.0} s as KubeVirt shows them (VMIMs created, the VMI's migrationState \
         through listening and completed, VMIMs succeeded and deleted, {} VMIs migrated again and again and \
         deleted), {} watch expiries (410, listed again), {} virt-handler restarts that move it between two \
         network namespaces, and {} migrations with real TCP traffic across the lab's migration network \
         (`bench run` to the endpoints the VMI publishes). Series retention {} s (the default is 600 s: the \
         plateau is the retention times the migration rate). {} verdicts, {} Events posted: a migration that \
         began and ended while a watch was expired (kube-rs backs off 0.8 s and more before listing again) is \
         first seen finished, and is not judged. Samples every 25 migrations; those taken at a virt-handler \
         restart (every 200) fall between the old attachment's end and the new one's: nothing attached, the \
         page holding only the agent's two series. RSS steps up at the first restart (the data plane loaded \
         again, its object and maps, while the allocator keeps the first one's freed pages) and is flat from \
         then on.\n\n\
         | migrations | s | RSS MiB | open fds | BPF links | interfaces attached | series | migrations on the page |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        s.migrations,
        s.date,
        s.kernel,
        s.migrations,
        s.seconds,
        crate::soak::VMIS,
        s.watch_expiries,
        s.virt_handler_restarts,
        s.lab_migrations,
        s.retention_s,
        s.samples.last().map_or(0, |x| x.verdicts),
        s.events_posted,
    );
    let n = s.samples.len();
    let mut picks: Vec<usize> = [0, 1, n / 4, n / 2, 3 * n / 4, n.saturating_sub(2), n - 1]
        .into_iter()
        .filter(|i| *i < n)
        .collect();
    picks.dedup();
    for i in picks {
        let x = &s.samples[i];
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {} | {} | {} | {} | {} |",
            x.migrations,
            x.elapsed_s,
            x.rss_kib as f64 / 1024.0,
            x.fds,
            x.bpf_links,
            x.attached,
            x.series,
            x.migrations_on_page
        );
    }
    // Warm-up and restarts excluded: samples with migrations on and attached.
    let body: Vec<SoakSample> = s.samples[1.min(n - 1)..]
        .iter()
        .filter(|x| x.attached > 0)
        .cloned()
        .collect();
    let half = body.len() / 2;
    let (first, second) = body.split_at(half.max(1).min(body.len()));
    let max = |xs: &[SoakSample], f: Figure| xs.iter().map(f).fold(0.0, f64::max);
    let figures: [(&str, Figure, f64); 4] = [
        ("RSS", |x| x.rss_kib as f64, 1.10),
        ("open fds", |x| x.fds as f64, 1.10),
        ("BPF links", |x| x.bpf_links as f64, 1.0),
        ("series", |x| x.series as f64, 1.10),
    ];
    let mut verdicts = Vec::new();
    for (name, f, slack) in figures {
        let (a, b) = (max(first, f), max(second, f));
        verdicts.push(format!(
            "{name} {}",
            if b <= a * slack {
                "levels off"
            } else {
                "**grows**"
            }
        ));
    }
    let _ = writeln!(
        out,
        "\nThe first half's peak against the second half's (within 10%; BPF links exactly; samples taken \
         mid-restart left out): {}. Target: nothing grows with the number of migrations seen: {}.",
        verdicts.join(", "),
        verdict(
            verdicts.iter().all(|v| v.ends_with("levels off")),
            "a figure that keeps growing".into()
        )
    );
}

/// Which code the figures describe, and the marker the page's test reads.
fn provenance_section(out: &mut String, r: &Results) {
    let p = &r.provenance;
    let code = match &p.commit {
        None => "no git checkout: the code measured is not recorded".to_string(),
        Some(commit) if p.code_clean() => format!(
            "commit `{commit}`, the eBPF programs and the data plane ({}) as committed{}",
            crate::provenance::MEASURED_PATHS.join(", "),
            if p.dirty.is_empty() {
                ", the tree clean".to_string()
            } else {
                format!(
                    "; {} other path(s) changed in the tree (not measured code)",
                    p.dirty.len()
                )
            }
        ),
        Some(commit) => format!(
            "commit `{commit}` **with uncommitted changes to the measured code** ({}): these figures describe no \
             commit",
            p.dirty
                .iter()
                .filter(|d| crate::provenance::MEASURED_PATHS
                    .iter()
                    .any(|m| d.starts_with(m)))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _ = writeln!(
        out,
        "Code measured: {code}. A test (`the_published_page_describes_the_code_at_head`, in `cargo xtask test`) \
         fails when this page was written from other code than HEAD's under those paths.\n\n{}\n",
        p.marker()
    );
}

/// Every run kept in bench/results/, judged against today's targets.
fn history_section(out: &mut String, h: &History) {
    let _ = writeln!(
        out,
        "## Every run, against the targets\n\n`bench/results/` keeps every run: {} full runs and {} runs of single \
         parts (`bench/results/parts/`, `--only`, including A/B runs of other builds). Each is judged here \
         against today's targets by the figures it holds (runs made before intervals were recorded by their \
         median, counted in the last column); a run that missed stays counted.\n\n\
         | target | runs that measured it | met | judged by the median only |\n| --- | ---: | ---: | ---: |",
        h.full_runs, h.part_runs
    );
    for t in &h.tallies {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.target, t.measured, t.met, t.by_median
        );
    }
    out.push('\n');
}

/// What the hooks cost in place, above the in-place floor, and against the
/// reference programs measured in the same rounds.
fn in_place_section(out: &mut String, r: &Results) {
    let ip = &r.in_place;
    let reference = ip.reference.as_deref();
    let _ = writeln!(
        out,
        "\n## The hooks in place\n\nReal {} MiB migrations with the kernel's run-time statistics on \
         (`BPF_ENABLE_STATS`: the kernel times every program run): migverify's programs on every observation \
         point against the empty program on the same hooks (the in-place floor: the hook, the call into a \
         program, the statistics' own clock reads), one migration each per round, the order reversed every other \
         round; {} rounds. \"Above the floor\" is taken within each round; medians with 95% bootstrap intervals.",
        ip.memory_mib, ip.rounds,
    );
    match reference {
        Some(reference) => {
            let _ = writeln!(
                out,
                "\nTarget: at most half of what the programs cost at {reference}, where the target was set. \
                 Those programs are built from that commit (`git archive`, the same toolchain) and measured in the \
                 same rounds, so the target is a ratio taken within each round (\"to {reference}\"), the \
                 interval's upper end included: an absolute figure moves with the machine ({reference}'s programs \
                 took {:.1} ns above the floor on the machine the target was first measured on, and what they take \
                 on this one is in the table).",
                targets::IN_PLACE_BEFORE_NS
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nTarget: at most half of the {:.1} ns above the floor measured before this work (f357094, five \
                 rounds), so <= {:.1} ns, the interval's upper end included.",
                targets::IN_PLACE_BEFORE_NS,
                targets::IN_PLACE_NS
            );
        }
    }
    out.push_str(
        "\n| programs | ns per hook run | above the floor | to the reference | flow-cache misses (median) |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for s in &ip.summary {
        let mut misses: Vec<u64> = ip
            .runs
            .iter()
            .filter(|x| x.variant == s.variant)
            .filter_map(|x| x.flow_cache_misses)
            .collect();
        misses.sort_unstable();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            s.variant,
            ci(&s.ns_per_run, 1),
            ci(&s.above_floor, 1),
            s.to_reference
                .as_ref()
                .filter(|_| s.variant != crate::inplace::FLOOR)
                .map_or("-".to_string(), |i| ci(i, 2)),
            misses
                .get(misses.len() / 2)
                .map_or("-".to_string(), u64::to_string)
        );
    }
    let Some(mv) = ip
        .summary
        .iter()
        .find(|s| s.variant == crate::inplace::THIS_BUILD)
    else {
        return;
    };
    let runs: u64 = ip
        .runs
        .iter()
        .filter(|x| x.variant == mv.variant)
        .map(|x| x.runs)
        .sum::<u64>()
        / ip.rounds.max(1) as u64;
    let verdict = match mv.to_reference.as_ref().filter(|_| reference.is_some()) {
        Some(ratio) => format!(
            "<= {} of {}'s above the floor: {}",
            targets::IN_PLACE_TO_REFERENCE,
            reference.unwrap_or_default(),
            interval_verdict(
                targets::at_most(ratio, targets::IN_PLACE_TO_REFERENCE),
                ratio,
                targets::IN_PLACE_TO_REFERENCE,
                2
            )
        ),
        None => format!(
            "<= {:.1} ns above the floor: {}",
            targets::IN_PLACE_NS,
            interval_verdict(
                targets::at_most(&mv.above_floor, targets::IN_PLACE_NS),
                &mv.above_floor,
                targets::IN_PLACE_NS,
                1
            )
        ),
    };
    let _ = writeln!(
        out,
        "\nTarget: {verdict}. The hooks ran about {} k times a migration.",
        runs / 1000
    );
    out.push_str(IN_PLACE_WHERE_THE_TIME_GOES);
}

/// What `--only iperf3-points` showed, kept with the run in
/// bench/results/parts/.
const IPERF_BY_POINTS: &str = "\nWhich hooks the loss comes from, and what any program on them costs \
    (`--only iperf3-points --rounds 16`, one stream, offloads off, 16 paired rounds, every variant in each; \
    bench/results/parts/2026-12-06T193229Z-Iperf3Points.json): the observers on every point, 0.903 [0.857, 0.924]; \
    **the empty program on the same hooks, 0.940 [0.911, 0.961]**; the observers on node A's two migration \
    interfaces only (the sender), 0.979 [0.944, 1.030]; on node B's only (the receiver), 0.909 [0.896, 0.927]. \
    The loss is node B's: the sender's segments leave node A as GSO packets (software GSO stays on with the NIC \
    offloads off) and are cut to MTU size on the way, so node B's two ingress hooks (its NIC `eth1` and \
    virt-handler's `migration0`, a macvlan on it: the same packet, one after the other) see every wire segment, \
    and in the lab they run in the softirq of the sender's CPU, the one that limits the stream. The ACKs' runs \
    (node A's set sees every ACK twice) fall on the other core and cost nothing measurable. **The 0.98 target \
    cannot be met on these hooks by any program**: the kernel's hook with an empty program on it already takes \
    4-9% of the stream (the interval's upper end, 0.961, is below 0.98); migverify's programs add about as much \
    again. Meeting it would take fewer hooks on a segment's path (one of node B's two, which would drop that \
    interface from the verdict's per-interface figures), not a cheaper program. On a cluster each node runs its \
    own hooks on its own CPUs, and the node that receives with GRO off pays for two hook runs a segment.\n";

/// What A/B builds in the same rounds showed (`--only hooks-in-place
/// --build`), kept with the runs in bench/results/parts/.
const IN_PLACE_WHERE_THE_TIME_GOES: &str = "\nWhere the time goes in place, from A/B builds of the programs \
    measured in the same rounds (`--only hooks-in-place --build`, five rounds each; \
    bench/results/parts/2026-12-06T014113Z-HooksInPlace.json), medians above the floor, each build doing what \
    the one before did and more: counting the frame and returning, 4.9 ns; parsing the headers, 10.1; finding \
    the flow in the CPU's flow cache, 25.0; accounting the segment with plain adds, 35.5; with atomic adds, as \
    every CPU then did, 56.5. The locked adds (three on a data segment, two on an ACK) cost this machine about 21 ns, twice the rest of the accounting. \
    Plain adds would lose counts without a trace whenever two CPUs handle one flow at the same moment, so each \
    flow entry now holds two CPU shares: the first two CPUs that handle the flow each claim one (a \
    compare-and-swap, once) and add to it plainly; a third adds to the shared counters atomically, and user \
    space adds them up. That took the observer from 54-58 ns to 38-40 (2026-12-06T014711Z, 014850Z). Flow \
    entries on cache lines of their own (a connection's two directions at a hook are neighbouring entries, \
    often handled on two CPUs) took 2-3 ns more off (015716Z). The SYN/FIN/RST bookkeeping out of line and RTT \
    samples spaced by echo ticks instead of a clock read gave 1-4 ns between them (014113Z, 013920Z). A \
    `perf` profile of the JIT images during lab migrations put a quarter of node B's ingress hooks' samples \
    right after three loads (the hook's counters, the flow cache's slot, the entry's key), lines the \
    migration's own data evicts between two segments; each hook now remembers, per CPU, the entry and ports \
    of the last flow it accounted, beside its counters, and a segment of that flow (a GSO packet's segments \
    come in a row) skips the flow cache: 3.1 ns a run less, paired over 20 rounds (051957Z).\n";
