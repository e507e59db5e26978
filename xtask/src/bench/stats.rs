//! From the overhead runs to what the report quotes: per variant the median with min and max,
//! ratios to the bare call taken round by round, the nanoseconds each tracer adds, kspan's burst
//! losses round by round, and the goals.

use kspan_e2e::bench::overhead::{OverheadReport, Variant, UNTIMED_CALLS};
use serde::Serialize;

/// Median, min and max of some runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Spread {
            median,
            min: first,
            max: last,
        })
    }
}

/// One variant's runs, summed up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariantSummary {
    /// The variant.
    pub variant: Variant,
    /// Runs measured.
    pub runs: usize,
    /// Nanoseconds per call.
    pub ns_per_call: Spread,
    /// This run's time over the bare run's of the same round (absent for bare).
    pub ratio_to_bare: Option<Spread>,
    /// Median nanoseconds per call added to the bare call's median (absent for bare).
    pub added_ns: Option<f64>,
    /// Milliseconds from starting the tracer to it being attached.
    pub startup_ms: Option<Spread>,
    /// Calls the workload made in these runs (timed and untimed).
    pub calls_made: u64,
    /// Calls the tracer delivered (spans or histogram entries), where it reports them.
    pub delivered: Option<u64>,
    /// Calls kspan counted as lost.
    pub lost: Option<u64>,
}

/// Summarises each variant of `report`, in the order they ran.
pub fn summarize(report: &OverheadReport) -> Vec<VariantSummary> {
    let mut variants: Vec<Variant> = Vec::new();
    for sample in &report.samples {
        if !variants.contains(&sample.variant) {
            variants.push(sample.variant);
        }
    }
    let bare_of_round = |round: usize| {
        report
            .samples
            .iter()
            .find(|s| s.round == round && s.variant == Variant::Bare)
            .map(|s| s.ns_per_call)
    };
    let median_of = |variant: Variant| {
        let values: Vec<f64> = report
            .samples
            .iter()
            .filter(|s| s.variant == variant)
            .map(|s| s.ns_per_call)
            .collect();
        Spread::of(&values)
    };
    let bare = median_of(Variant::Bare);
    variants
        .into_iter()
        .filter_map(|variant| {
            let samples: Vec<_> = report
                .samples
                .iter()
                .filter(|s| s.variant == variant)
                .collect();
            let ns_per_call = median_of(variant)?;
            let is_tracer = variant != Variant::Bare;
            let ratios: Vec<f64> = samples
                .iter()
                .filter_map(|s| Some(s.ns_per_call / bare_of_round(s.round)?))
                .collect();
            let startups: Vec<f64> = samples.iter().filter_map(|s| s.startup_ms).collect();
            let sum = |values: Vec<Option<u64>>| -> Option<u64> { values.into_iter().sum() };
            Some(VariantSummary {
                variant,
                runs: samples.len(),
                ns_per_call,
                ratio_to_bare: is_tracer.then(|| Spread::of(&ratios)).flatten(),
                added_ns: is_tracer
                    .then(|| Some(ns_per_call.median - bare?.median))
                    .flatten(),
                startup_ms: Spread::of(&startups),
                calls_made: samples.len() as u64 * (report.calls + UNTIMED_CALLS),
                delivered: sum(samples.iter().map(|s| s.delivered).collect()),
                lost: sum(samples.iter().map(|s| s.lost).collect()),
            })
        })
        .collect()
}

/// One of issue 16's goals, checked against this run (reported, never asserted).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoalCheck {
    /// The goal, in words.
    pub goal: String,
    /// What this run measured, in `unit`.
    pub measured: f64,
    /// The largest value that meets the goal.
    pub limit: f64,
    /// The unit of `measured` and `limit`.
    pub unit: &'static str,
    /// Whether this run met it.
    pub met: bool,
}

impl GoalCheck {
    /// A goal met when `measured` is at most `limit`.
    pub fn at_most(goal: impl Into<String>, measured: f64, limit: f64, unit: &'static str) -> Self {
        Self {
            goal: goal.into(),
            measured,
            limit,
            unit,
            met: measured <= limit,
        }
    }
}

/// Rounds a burst goal needs: one lossless round proves little.
pub const BURST_ROUNDS: usize = 7;

/// One round of the bench loop under kspan: its ~200,000 calls come as a burst, as fast as the
/// loop goes (500k to 1M calls/s on this project's machine).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BurstRound {
    /// Round number, from 1.
    pub round: usize,
    /// Calls the workload made (timed and untimed).
    pub calls_made: u64,
    /// Spans that reached the receiver.
    pub delivered: u64,
    /// Calls made that never arrived.
    pub lost: u64,
    /// Calls kspan counted as lost.
    pub counted_lost: u64,
}

/// kspan's rounds of the overhead runs, as bursts: what each delivered and lost.
pub fn bursts(report: &OverheadReport) -> Vec<BurstRound> {
    let calls_made = report.calls + UNTIMED_CALLS;
    report
        .samples
        .iter()
        .filter(|s| s.variant == Variant::Kspan)
        .map(|s| {
            let delivered = s.delivered.unwrap_or(0);
            BurstRound {
                round: s.round,
                calls_made,
                delivered,
                lost: calls_made.saturating_sub(delivered),
                counted_lost: s.lost.unwrap_or(0),
            }
        })
        .collect()
}

/// Round by round, what kspan adds to the bare call over what `other` adds: how stable the
/// ratio of the medians is. Rounds where `other` adds nothing measurable are left out.
pub fn added_ratio(report: &OverheadReport, other: Variant) -> Option<Spread> {
    let of = |round: usize, variant: Variant| {
        report
            .samples
            .iter()
            .find(|s| s.round == round && s.variant == variant)
            .map(|s| s.ns_per_call)
    };
    let ratios: Vec<f64> = (1..=report.rounds)
        .filter_map(|round| {
            let bare = of(round, Variant::Bare)?;
            let kspan = of(round, Variant::Kspan)? - bare;
            let other = of(round, other)? - bare;
            (other > 1.0).then(|| kspan / other)
        })
        .collect();
    Spread::of(&ratios)
}

/// Issue 16's per-call goals: kspan adds at most half of what bpftrace's minimal pairing adds,
/// and loses no call in any burst round (at least [`BURST_ROUNDS`] of them).
pub fn goals(summaries: &[VariantSummary], bursts: &[BurstRound]) -> Vec<GoalCheck> {
    let added = |variant: Variant| {
        summaries
            .iter()
            .find(|s| s.variant == variant)
            .and_then(|s| s.added_ns)
    };
    let mut checks = Vec::new();
    if let (Some(kspan), Some(bpftrace)) = (added(Variant::Kspan), added(Variant::Bpftrace)) {
        checks.push(GoalCheck::at_most(
            "kspan adds at most 0.5 × what bpftrace's minimal pairing adds per call",
            kspan,
            0.5 * bpftrace,
            "ns",
        ));
    }
    if !bursts.is_empty() {
        let worst = bursts.iter().map(|b| b.lost).max().unwrap_or(0);
        let mut check = GoalCheck::at_most(
            format!(
                "no call lost in any burst round (the bench loop's calls, as fast as it makes \
                 them), in at least {BURST_ROUNDS} rounds ({} run)",
                bursts.len()
            ),
            worst as f64,
            0.0,
            "calls lost in the worst round",
        );
        check.met &= bursts.len() >= BURST_ROUNDS;
        checks.push(check);
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use kspan_e2e::bench::overhead::OverheadSample;

    fn sample(round: usize, variant: Variant, ns_per_call: f64) -> OverheadSample {
        OverheadSample {
            round,
            variant,
            ns_per_call,
            startup_ms: (variant != Variant::Bare).then_some(100.0),
            delivered: (variant == Variant::Kspan).then_some(1001),
            lost: (variant == Variant::Kspan).then_some(0),
        }
    }

    #[test]
    fn spread_takes_the_middle() {
        let odd = Spread::of(&[5.0, 1.0, 3.0]).expect("values");
        assert_eq!((odd.median, odd.min, odd.max), (3.0, 1.0, 5.0));
        assert_eq!(
            Spread::of(&[4.0, 1.0, 2.0, 3.0]).expect("values").median,
            2.5
        );
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let report = OverheadReport {
            attach: "tracepoint".into(),
            kernel: "6.18".into(),
            calls: 1000,
            rounds: 2,
            samples: vec![
                sample(1, Variant::Bare, 100.0),
                sample(1, Variant::Floor, 150.0),
                sample(1, Variant::Kspan, 160.0),
                sample(2, Variant::Bare, 200.0),
                sample(2, Variant::Floor, 250.0),
                sample(2, Variant::Kspan, 300.0),
            ],
            kernel_time: vec![],
        };
        let summaries = summarize(&report);
        let order: Vec<Variant> = summaries.iter().map(|s| s.variant).collect();
        assert_eq!(order, [Variant::Bare, Variant::Floor, Variant::Kspan]);
        let kspan = &summaries[2];
        let ratio = kspan.ratio_to_bare.expect("ratio");
        assert_eq!((ratio.min, ratio.max), (1.5, 1.6));
        // Medians: bare 150, kspan 230.
        assert_eq!(kspan.added_ns, Some(80.0));
        assert_eq!(
            (kspan.calls_made, kspan.delivered, kspan.lost),
            (2002, Some(2002), Some(0))
        );
        assert_eq!(summaries[0].ratio_to_bare, None);
        assert_eq!(summaries[0].delivered, None);

        let bursts = bursts(&report);
        assert_eq!(
            bursts
                .iter()
                .map(|b| (b.round, b.calls_made, b.lost))
                .collect::<Vec<_>>(),
            [(1, 1001, 0), (2, 1001, 0)]
        );
        let checks = goals(&summaries, &bursts);
        assert_eq!(checks.len(), 1, "no bpftrace runs: only the burst goal");
        assert_eq!(checks[0].measured, 0.0);
        assert!(!checks[0].met, "two rounds are too few to meet it");
    }

    #[test]
    fn kspan_against_bpftrace_round_by_round() {
        let mut samples = Vec::new();
        for (round, bpftrace) in [(1, 500.0), (2, 300.0), (3, 100.5)] {
            samples.push(sample(round, Variant::Bare, 100.0));
            samples.push(sample(round, Variant::Kspan, 200.0));
            samples.push(sample(round, Variant::Bpftrace, bpftrace));
        }
        samples[1].delivered = Some(990);
        let report = OverheadReport {
            attach: "tracepoint".into(),
            kernel: "6.18".into(),
            calls: 1000,
            rounds: 3,
            samples,
            kernel_time: vec![],
        };
        // Round 3's bpftrace adds half a nanosecond: no ratio.
        let ratio = added_ratio(&report, Variant::Bpftrace).expect("two rounds");
        assert_eq!((ratio.min, ratio.max), (0.25, 0.5));
        let summaries = summarize(&report);
        let bursts = bursts(&report);
        assert_eq!(bursts[0].lost, 11);
        let checks = goals(&summaries, &bursts);
        // Medians: bare 100, kspan adds 100, bpftrace 200: the limit is 100, met.
        assert_eq!((checks[0].measured, checks[0].limit), (100.0, 100.0));
        assert!(checks[0].met);
        assert_eq!((checks[1].measured, checks[1].met), (11.0, false));
    }
}
