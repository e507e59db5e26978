//! The results as markdown: printed at the end of a run and saved beside results.json.

use std::fmt::Write as _;

use kspan_e2e::bench::overhead::Variant;

use super::{
    results::{BenchResults, OverheadSummary, ThroughputRow, VmResults},
    stats::{GoalCheck, Spread, VariantSummary},
};

/// The whole report.
pub fn render(results: &BenchResults) -> String {
    let mut out = String::new();
    if results.smoke {
        out.push_str("**Smoke run: too short for the numbers to mean anything.**\n\n");
    }
    let host = &results.host;
    let overhead = &host.overhead;
    let _ = writeln!(
        out,
        "### Per-call overhead: host, {} probes, kernel {}\n\n{} timed `signalfd4` mask updates per run, \
         {} rounds, variants interleaved; ratios are taken round by round.\n",
        overhead.probe, overhead.kernel, overhead.calls_per_run, overhead.rounds
    );
    out.push_str(&overhead_table(overhead));
    out.push('\n');
    out.push_str(&kernel_time_table(overhead));
    out.push_str(&added_ratios(overhead));
    out.push_str(&burst_table(overhead));
    let _ = writeln!(
        out,
        "\n### Throughput and footprint: host, {} s per load\n\n\
         kspan exports every call over OTLP/gRPC to a receiver on the same machine. It is stopped \
         (SIGINT) when the workload is done and exports what it still holds before exiting.\n",
        host.throughput_seconds
    );
    out.push_str(&throughput_table(&host.throughput));
    match &host.max_lossless {
        Some(best) => {
            let _ = writeln!(
                out,
                "\nHighest load with zero loss: **{}** ({:.0} calls/s).",
                best.label, best.calls_per_second
            );
        }
        None => out.push_str("\nEvery load lost calls.\n"),
    }
    let idle = &host.idle;
    let _ = writeln!(
        out,
        "\n### Idle: host, {:.0} s\n\n\
         kspan attached (`--exporter stdout`) with nothing to capture; all its threads, from \
         `/proc/<pid>/task/*/schedstat` and `status`.\n\n\
         | CPU, % of a core | wakeups/s (voluntary context switches) | preemptions/s | threads | RSS MiB |\n\
         |---:|---:|---:|---:|---:|\n\
         | {:.3} | {:.1} | {:.1} | {} | {:.1} |",
        idle.seconds,
        idle.cpu_percent,
        idle.wakeups_per_second,
        idle.preemptions_per_second,
        idle.threads,
        idle.rss_kib as f64 / 1024.0
    );
    if let Some(encoding) = &host.encoding {
        let _ = writeln!(
            out,
            "\n### Encoding alone\n\n\
             `cargo bench -p kspan-otel --bench encode`: batches of 1,024 calls, CPU time of the \
             bench thread, median of 7 interleaved rounds; request buffers reused as export \
             reuses them.\n\n\
             | span + log record, one pass | span alone | log record alone | prost baseline (same requests) | page faults per batch |\n\
             |---:|---:|---:|---:|---:|\n\
             | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} ns ({:.1} ×) | {:.1} |",
            encoding.span_and_log_ns,
            encoding.span_ns,
            encoding.log_ns,
            encoding.prost_baseline_ns,
            encoding.prost_baseline_ns / encoding.span_and_log_ns.max(1e-9),
            encoding.page_faults_per_batch,
        );
    }
    out.push_str("\n### Goals (issue 16)\n\n| goal | measured | limit | |\n|---|---:|---:|---|\n");
    for goal in overhead.goals.iter().chain(&host.goals) {
        out.push_str(&goal_row(goal));
    }
    if let Some(vm) = &results.vm {
        out.push('\n');
        out.push_str(&vm_section(vm));
    }
    out
}

fn goal_row(goal: &GoalCheck) -> String {
    format!(
        "| {} | {} {} | {} | **{}** |\n",
        goal.goal,
        short(goal.measured),
        goal.unit,
        short(goal.limit),
        if goal.met { "met" } else { "not met" }
    )
}

/// Three significant digits or so, without trailing zeros: `219`, `2.17`, `0.143`.
fn short(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{value:.decimals$}");
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    }
}

/// What kspan adds over what bpftrace and the floor add, round by round.
fn added_ratios(overhead: &OverheadSummary) -> String {
    let mut out = String::new();
    let ratios = [
        (
            "bpftrace's minimal pairing",
            &overhead.kspan_added_per_bpftrace_added,
        ),
        (
            "the empty floor programs",
            &overhead.kspan_added_per_floor_added,
        ),
    ];
    for (other, ratio) in ratios {
        if let Some(ratio) = ratio {
            let _ = writeln!(
                out,
                "- kspan's added ns per call ÷ {other}'s, round by round: {}",
                spread(ratio, 2)
            );
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// kspan's rounds as bursts: the bench loop makes its calls at ~500k/s.
fn burst_table(overhead: &OverheadSummary) -> String {
    if overhead.bursts.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "Bursts: each kspan round above is a burst of the bench loop's calls (default ring buffer \
         and export queue).\n\n| round | calls made | spans received | lost | kspan counted lost |\n\
         |---:|---:|---:|---:|---:|\n",
    );
    for burst in &overhead.bursts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            burst.round, burst.calls_made, burst.delivered, burst.lost, burst.counted_lost
        );
    }
    out.push('\n');
    out
}

fn overhead_table(overhead: &OverheadSummary) -> String {
    let mut out = String::from(
        "| variant | ns/call: median (min–max) | × bare: median (min–max) | added ns/call | startup ms | calls delivered |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for summary in &overhead.variants {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            summary.variant.name(),
            spread(&summary.ns_per_call, 0),
            summary
                .ratio_to_bare
                .as_ref()
                .map_or("1".to_string(), |r| spread(r, 2)),
            summary
                .added_ns
                .map_or("–".to_string(), |ns| format!("{ns:+.0}")),
            summary
                .startup_ms
                .as_ref()
                .map_or("–".to_string(), |s| format!("{:.0}", s.median)),
            delivered(summary),
        );
    }
    out
}

/// Each tracer's programs inside the kernel, from one more run with the kernel's run-time
/// statistics on (they add two clock reads to every program run, so they stay off in the
/// rounds above).
fn kernel_time_table(overhead: &OverheadSummary) -> String {
    if overhead.kernel_time.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "In-kernel run time (one more run per tracer, `BPF_ENABLE_STATS` on; `kspan-baseline`, \
         when there, is the earlier build given by `--baseline`):\n\n\
         | variant | ns/call inside the kernel | programs: ns per run (runs) |\n\
         |---|---:|---|\n",
    );
    for time in &overhead.kernel_time {
        let programs: Vec<String> = time
            .programs
            .iter()
            .map(|p| {
                let per_run = p.run_time_ns as f64 / p.runs.max(1) as f64;
                format!("`{}` {per_run:.0} ({})", p.program, p.runs)
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} |",
            time.variant.name(),
            time.ns_per_call,
            programs.join(", ")
        );
    }
    out.push('\n');
    out
}

fn delivered(summary: &VariantSummary) -> String {
    match (summary.delivered, summary.lost) {
        (Some(delivered), Some(lost)) => format!(
            "{delivered} of {} (kspan counted {lost} lost)",
            summary.calls_made
        ),
        (Some(delivered), None) => format!("{delivered} of {}", summary.calls_made),
        _ => "–".to_string(),
    }
}

fn throughput_table(rows: &[ThroughputRow]) -> String {
    let mut out = String::from(
        "| load | calls made | calls/s | spans received | lost | where lost | kspan CPU ms per 1k calls | kspan peak RSS MiB | kspan startup ms | kspan exit after stop, s |\n\
         |---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let lost_at = if row.lost_at.is_empty() {
            "–".to_string()
        } else {
            row.lost_at
                .iter()
                .map(|(stage, count)| format!("{stage}: {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let load = if row.run.unexpected > 0 {
            format!("{} ({} unexpected answers)", row.label, row.run.unexpected)
        } else {
            row.label.clone()
        };
        let _ = writeln!(
            out,
            "| {load} | {} | {:.0} | {} | {} | {lost_at} | {:.1} | {:.1} | {:.0} | {:.1} |",
            row.run.calls_made,
            row.calls_per_second,
            row.run.spans_received,
            row.lost,
            row.cpu_ms_per_1k_calls,
            row.peak_rss_mib,
            row.run.startup_ms,
            row.run.exit_seconds,
        );
    }
    out
}

fn vm_section(vm: &VmResults) -> String {
    let mut out = format!(
        "### Per-call overhead in QEMU guests (emulated CPU: compare ratios only)\n\n\
         {} timed calls per run.\n\n\
         | kernel | probe | floor × bare | kspan × bare | kspan added ÷ floor added | rounds |\n\
         |---|---|---:|---:|---:|---:|\n",
        vm.calls_per_run
    );
    for guest in &vm.guests {
        let ratio = |variant: Variant| {
            guest
                .overhead
                .variants
                .iter()
                .find(|s| s.variant == variant)
                .and_then(|s| s.ratio_to_bare.as_ref())
                .map_or("–".to_string(), |r| spread(r, 2))
        };
        let added = |variant: Variant| {
            guest
                .overhead
                .variants
                .iter()
                .find(|s| s.variant == variant)
                .and_then(|s| s.added_ns)
        };
        let relative = match (added(Variant::Kspan), added(Variant::Floor)) {
            (Some(kspan), Some(floor)) if floor > 0.0 => format!("{:.2}", kspan / floor),
            _ => "–".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {relative} | {} |",
            guest.kernel_name,
            guest.overhead.kernel,
            guest.overhead.probe,
            ratio(Variant::Floor),
            ratio(Variant::Kspan),
            guest.overhead.rounds,
        );
    }
    for problem in &vm.problems {
        let _ = writeln!(out, "\n- No results: {problem}");
    }
    out
}

/// `median (min–max)` with `decimals` digits.
fn spread(spread: &Spread, decimals: usize) -> String {
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, spread.median, decimals, spread.min, decimals, spread.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_read_as_median_then_range() {
        let s = Spread {
            median: 1.234,
            min: 1.1,
            max: 1.5,
        };
        assert_eq!(spread(&s, 2), "1.23 (1.10–1.50)");
        assert_eq!(spread(&s, 0), "1 (1–2)");
    }

    #[test]
    fn goal_figures_keep_about_three_digits() {
        let figures = [218.812, 2.17, 0.1432, 40.0, 0.0, 12.26];
        assert_eq!(
            figures.map(short),
            ["219", "2.17", "0.143", "40", "0", "12.3"]
        );
    }
}
