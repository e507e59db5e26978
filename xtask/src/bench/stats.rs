//! From the overhead runs to what the report quotes: per variant the median with min and max,
//! ratios to the bare call taken round by round, the nanoseconds each tracer adds, and the goals.

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

/// kspan's added cost against one goal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoalCheck {
    /// What is compared, in words.
    pub goal: String,
    /// kspan's added ns per call.
    pub kspan_added_ns: f64,
    /// The largest added ns per call that meets the goal.
    pub limit_ns: f64,
    /// Whether kspan met it in this run (reported, never asserted).
    pub met: bool,
}

/// The goals: kspan adds at most 1.25 × the floor's cost, and less than bpftrace.
pub fn goals(summaries: &[VariantSummary]) -> Vec<GoalCheck> {
    let added = |variant: Variant| {
        summaries
            .iter()
            .find(|s| s.variant == variant)
            .and_then(|s| s.added_ns)
    };
    let Some(kspan) = added(Variant::Kspan) else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    if let Some(floor) = added(Variant::Floor) {
        checks.push(GoalCheck {
            goal: "kspan adds at most 1.25 × what the empty floor programs add".into(),
            kspan_added_ns: kspan,
            limit_ns: 1.25 * floor,
            met: kspan <= 1.25 * floor,
        });
    }
    if let Some(bpftrace) = added(Variant::Bpftrace) {
        checks.push(GoalCheck {
            goal: "kspan adds less than bpftrace doing the equivalent work".into(),
            kspan_added_ns: kspan,
            limit_ns: bpftrace,
            met: kspan < bpftrace,
        });
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

        let checks = goals(&summaries);
        assert_eq!(checks.len(), 1, "no bpftrace runs: one goal");
        // floor adds 50 ns: the limit is 62.5, kspan's 80 misses it.
        assert_eq!((checks[0].limit_ns, checks[0].met), (62.5, false));
    }
}
