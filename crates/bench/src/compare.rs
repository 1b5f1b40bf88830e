//! Comparing two reports: the regression rule.
//!
//! Between two runs of the same binary on one machine, medians move by
//! 15–30 % (frequency, caches, what else runs), far more than the spread
//! of one run's repeats. A rule that trusts that spread calls regressions
//! on every rerun. A benchmark **regresses** here only when all hold:
//!
//! 1. its median is worse than the baseline's by more than the threshold
//!    (`--max-regression PCT`, 10 % by default);
//! 2. by more than the noise: twice the larger within-run MAD/median of the
//!    two runs, and the **between-run noise**: twice the range of the
//!    medians the baseline holds (`--save-baseline` keeps those of its last
//!    [`HISTORY`] saves; twice, because a few runs' range understates the
//!    spread of the next: for normal noise three runs span 1.7 σ on
//!    average, while two runs differ by up to 3.6 σ 99 % of the time), or
//!    [`BETWEEN_RUNS_PCT`] while it holds fewer than [`MIN_HISTORY`];
//! 3. the samples agree: the low end of a 95 % bootstrap interval of the
//!    change (2,000 resamples of each run's samples, seeded by the
//!    benchmark's name, so a comparison is repeatable) is worse than the
//!    threshold too.
//!
//! Before any of this, times and rates are put on the same machine: each
//! record carries the seconds a fixed piece of CPU work took right after it
//! was measured (`reference_s`), and the new figure is scaled by how much
//! slower or faster that reference got (`machine` in the table). A machine
//! that slowed down as a whole, a throttled CPU or a noisy neighbour, then
//! does not read as slower code; the baseline's saved medians are put on
//! one machine the same way before their range is taken.
//!
//! The machine's own limits (`…/ceiling` records, [`Record::within`]) are
//! not judged: they measure the machine, not the build.
//!
//! An improvement is the same with the signs turned. `baton bench
//! --baseline` then measures the suites of the regressions it found again
//! (`--confirm`, once by default) and keeps only those every run shows:
//! a spike of the machine (another process, a stall of the disk) does not
//! last through a rerun, a slower build does ([`Comparison::confirm`]).

use std::fmt::Write as _;

#[cfg(doc)]
use crate::report::Record;
use crate::report::{Report, format_value};

/// Between-run noise assumed while a baseline holds fewer than
/// [`MIN_HISTORY`] runs, in percent: above the 15–30 % seen between runs of
/// one binary on one machine, so that a baseline saved once calls only
/// what no rerun explains (a 2× slowdown), never noise.
pub const BETWEEN_RUNS_PCT: f64 = 50.0;

/// How many runs' medians a baseline keeps.
pub const HISTORY: usize = 5;

/// Runs a baseline needs before its own range replaces [`BETWEEN_RUNS_PCT`].
pub const MIN_HISTORY: usize = 3;

/// Bootstrap resamples per benchmark.
const RESAMPLES: usize = 2_000;

/// One benchmark present in both reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    /// The benchmark.
    pub name: String,
    /// The unit.
    pub unit: String,
    /// The baseline's median.
    pub before: f64,
    /// The new median.
    pub after: f64,
    /// How much worse, in percent (negative: better), whatever the unit's
    /// direction.
    pub worse_pct: f64,
    /// How much slower the machine was for the new figure than for the
    /// baseline's (the ratio of their references; 1 without them). The new
    /// figure and samples are scaled by it before anything is compared.
    pub machine: f64,
    /// The 95 % bootstrap interval of `worse_pct`.
    pub interval_pct: (f64, f64),
    /// The noise band, in percent: the larger of twice the within-run
    /// MAD/median and the between-run noise.
    pub noise_pct: f64,
    /// The between-run noise, in percent, and whether it was measured (the
    /// baseline's own range) or assumed ([`BETWEEN_RUNS_PCT`]).
    pub between_runs: (f64, bool),
    /// Worse beyond the threshold and the noise, and the samples agree.
    pub regression: bool,
    /// Better beyond both, and the samples agree.
    pub improvement: bool,
    /// A regression the rerun of its suite did not show again: counted as
    /// noise, shown as transient.
    pub transient: bool,
    /// Whether there was enough to judge it: at least two samples in each run
    /// (one says nothing of its noise), or [`MIN_ROUNDS`] rounds of an
    /// interleaved comparison.
    pub judged: bool,
}

/// The comparison of a new report against a baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Benchmarks in both.
    pub changes: Vec<Change>,
    /// In the baseline only.
    pub missing: Vec<String>,
    /// In the new report only.
    pub added: Vec<String>,
    /// The threshold used, percent.
    pub max_regression: f64,
}

impl Change {
    /// What the table and the report call it.
    pub fn verdict(&self) -> &'static str {
        if self.regression {
            "REGRESSION"
        } else if self.transient {
            "transient (not on a rerun)"
        } else if !self.judged {
            "not judged (one sample)"
        } else if self.improvement {
            "improved"
        } else if self.worse_pct.abs() <= self.noise_pct {
            "within noise"
        } else {
            "within threshold"
        }
    }
}

impl Comparison {
    /// Whether any benchmark regressed.
    pub fn regressed(&self) -> bool {
        self.changes.iter().any(|c| c.regression)
    }

    /// What the report keeps of it, against the baseline called `name`.
    pub fn verdict(&self, name: &str) -> crate::report::BaselineVerdict {
        crate::report::BaselineVerdict {
            name: name.to_string(),
            max_regression: self.max_regression,
            compared: self.changes.len(),
            regressions: self
                .changes
                .iter()
                .filter(|c| c.regression)
                .map(|c| {
                    format!(
                        "{}: {:+.1}% (95% interval [{:+.1}, {:+.1}]%)",
                        c.name, c.worse_pct, c.interval_pct.0, c.interval_pct.1
                    )
                })
                .collect(),
        }
    }

    /// The suites of the regressions, for a rerun.
    pub fn regressed_suites(&self) -> Vec<String> {
        let mut suites: Vec<String> = self
            .changes
            .iter()
            .filter(|c| c.regression)
            .map(|c| c.name.split('/').next().unwrap_or("").to_string())
            .collect();
        suites.sort();
        suites.dedup();
        suites
    }

    /// Keeps the regressions `rerun` (the same baseline against a new run
    /// of their suites) shows again; the others become transient.
    pub fn confirm(&mut self, rerun: &Comparison) {
        for c in self.changes.iter_mut().filter(|c| c.regression) {
            let again = rerun
                .changes
                .iter()
                .any(|r| r.name == c.name && r.regression);
            if !again {
                c.regression = false;
                c.transient = true;
            }
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .changes
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(9)
            .max(9);
        let _ = writeln!(
            out,
            "{:<width$}  {:>12} {:>12} {:>8} {:>9} {:>17} {:>8}  verdict (regression: worse by > {}% and > noise, and the 95% interval agrees)",
            "benchmark",
            "baseline",
            "now",
            "machine",
            "change",
            "95% interval",
            "noise",
            self.max_regression
        );
        for c in &self.changes {
            let verdict = c.verdict();
            let _ = writeln!(
                out,
                "{:<width$}  {:>12} {:>12} {:>7.2}× {:>+8.1}% {:>17} {:>7.1}%{}  {verdict}",
                c.name,
                format_value(c.before, &c.unit),
                format_value(c.after, &c.unit),
                c.machine,
                // Shown as "worse" so that + always means slower/less.
                c.worse_pct,
                format!("[{:+.1}, {:+.1}]%", c.interval_pct.0, c.interval_pct.1),
                c.noise_pct,
                if c.between_runs.1 { " " } else { "*" },
            );
        }
        for m in &self.missing {
            let _ = writeln!(out, "{m:<width$}  only in the baseline");
        }
        for a in &self.added {
            let _ = writeln!(out, "{a:<width$}  new (no baseline)");
        }
        let n = self.changes.iter().filter(|c| c.regression).count();
        let _ = writeln!(
            out,
            "{} compared, {} regression{} (change: + is worse; now and change are on the baseline's machine: machine = how much slower it ran now)",
            self.changes.len(),
            n,
            if n == 1 { "" } else { "s" }
        );
        if self.changes.iter().any(|c| !c.between_runs.1) {
            let _ = writeln!(
                out,
                "* between-run noise assumed ({BETWEEN_RUNS_PCT}%): the baseline holds fewer than \
                 {MIN_HISTORY} runs; save it again (--save-baseline) to measure its own"
            );
        }
        out
    }
}

/// How much worse `after` is than `before`, in percent.
fn worse(before: f64, after: f64, higher_is_better: bool) -> f64 {
    let raw = if before != 0.0 {
        (after - before) / before.abs() * 100.0
    } else {
        0.0
    };
    if higher_is_better { -raw } else { raw }
}

/// A small seeded generator (SplitMix64): repeatable resamples without a
/// dependency.
struct SplitMix(u64);

impl SplitMix {
    /// Seeded by the FNV-1a hash of `name`: the same comparison gives the
    /// same interval.
    fn seeded(name: &str) -> SplitMix {
        SplitMix(name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as usize
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    crate::stats::percentile_sorted(values, 50.0)
}

/// The 95 % bootstrap interval of the change from `before` to `after`.
fn interval(name: &str, before: &[f64], after: &[f64], higher_is_better: bool) -> (f64, f64) {
    if before.is_empty() || after.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix::seeded(name);
    let (mut b, mut a) = (before.to_vec(), after.to_vec());
    let mut changes: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for x in &mut b {
                *x = before[rng.below(before.len())];
            }
            for x in &mut a {
                *x = after[rng.below(after.len())];
            }
            worse(median(&mut b), median(&mut a), higher_is_better)
        })
        .collect();
    changes.sort_by(f64::total_cmp);
    (
        crate::stats::percentile_sorted(&changes, 2.5),
        crate::stats::percentile_sorted(&changes, 97.5),
    )
}

/// Whether a record's figure follows the reference's CPU speed: the
/// single-threaded CPU work of planning and the plan cache. Figures of
/// threads, disks and sockets (events, the engine, HTTP) and bytes do not
/// scale with it, and are compared as measured.
fn speed_bound(r: &crate::report::Record) -> bool {
    let cpu = ["planning/", "cache/", "scaling/planning/"]
        .iter()
        .any(|p| r.name.starts_with(p));
    cpu && !matches!(r.unit.as_str(), "bytes" | "ratio")
}

/// Whether a change of `pct` (its interval's near end at `near`) is beyond
/// the threshold, the noise, and with its interval beyond the threshold too:
/// worse for a regression; with the signs turned, better for an improvement.
fn beyond(pct: f64, near: f64, noise_pct: f64, max_regression: f64) -> bool {
    pct > max_regression && pct > noise_pct && near > max_regression
}

/// Fewest samples a run needs for its record to be judged: one sample says
/// nothing of its noise.
const MIN_SAMPLES: usize = 2;

/// `value`, measured on a machine `factor` times slower than the baseline's,
/// as the baseline's machine would have measured it.
fn on_baseline_machine(value: f64, factor: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        value * factor
    } else {
        value / factor
    }
}

/// The between-run noise of a baseline record, in percent, and whether it
/// was measured: the range of its saves' medians, each put on the first
/// save's machine when every save has its reference.
fn between_runs(b: &crate::report::Record) -> (f64, bool) {
    let medians = &b.baseline_medians;
    if medians.len() < MIN_HISTORY {
        return (BETWEEN_RUNS_PCT, false);
    }
    let refs = &b.baseline_references;
    let mut sorted: Vec<f64> = if refs.len() == medians.len() && speed_bound(b) {
        medians
            .iter()
            .zip(refs)
            .map(|(m, r)| on_baseline_machine(*m, r / refs[0], b.higher_is_better))
            .collect()
    } else {
        medians.clone()
    };
    let center = median(&mut sorted);
    let range = sorted[sorted.len() - 1] - sorted[0];
    if center == 0.0 {
        return (0.0, true);
    }
    ((2.0 * range / center.abs() * 100.0).abs(), true)
}

/// Compares `after` against `baseline` with a threshold of `max_regression`
/// percent.
pub fn compare(baseline: &Report, after: &Report, max_regression: f64) -> Comparison {
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for b in baseline.records.iter().filter(|r| !r.is_ceiling()) {
        let Some(a) = after.get(&b.name) else {
            missing.push(b.name.clone());
            continue;
        };
        let machine = match (b.reference_s, a.reference_s) {
            (Some(rb), Some(ra)) if rb > 0.0 && ra > 0.0 && speed_bound(b) => ra / rb,
            _ => 1.0,
        };
        let adjust = |x: f64| on_baseline_machine(x, machine, b.higher_is_better);
        let before = b.statistics.median;
        let now = adjust(a.statistics.median);
        let after_samples: Vec<f64> = a.samples.iter().map(|&x| adjust(x)).collect();
        let worse_pct = worse(before, now, b.higher_is_better);
        let between = between_runs(b);
        let within = 2.0 * b.statistics.noise.max(a.statistics.noise) * 100.0;
        let noise_pct = within.max(between.0);
        let interval_pct = interval(&b.name, &b.samples, &after_samples, b.higher_is_better);
        let judged = b.samples.len().min(a.samples.len()) >= MIN_SAMPLES;
        // Without samples (hand-made reports), the medians speak alone.
        let (low, high) = if interval_pct.0.is_nan() {
            (worse_pct, worse_pct)
        } else {
            interval_pct
        };
        changes.push(Change {
            name: b.name.clone(),
            unit: b.unit.clone(),
            before,
            after: now,
            worse_pct,
            machine,
            interval_pct: (low, high),
            noise_pct,
            between_runs: between,
            regression: judged && beyond(worse_pct, low, noise_pct, max_regression),
            improvement: judged && beyond(-worse_pct, -high, noise_pct, max_regression),
            transient: false,
            judged,
        });
    }
    let added = after
        .records
        .iter()
        .filter(|r| !r.is_ceiling() && baseline.get(&r.name).is_none())
        .map(|r| r.name.clone())
        .collect();
    Comparison {
        changes,
        missing,
        added,
        max_regression,
    }
}

/// Rounds an interleaved comparison needs before it judges a benchmark.
pub const MIN_ROUNDS: usize = 3;

/// Interleaved A/B: `rounds` are pairs (the other build's report, this
/// build's), each pair measured back to back, the order alternating from
/// round to round. What drifts on the machine (its speed swings by up to 2×
/// for minutes here) moves both halves of a pair alike, so each round's
/// change is read within its pair, and the rounds' changes are what is
/// judged: a benchmark regresses when the median of its per-round changes is
/// worse than `max_regression` and than their spread (twice their MAD), and
/// the low end of the 95 % bootstrap interval of that median (the rounds
/// resampled) is worse than `max_regression` too.
pub fn compare_paired(rounds: &[(Report, Report)], max_regression: f64) -> Comparison {
    let Some((first, _)) = rounds.first() else {
        return Comparison {
            changes: Vec::new(),
            missing: Vec::new(),
            added: Vec::new(),
            max_regression,
        };
    };
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for b in first.records.iter().filter(|r| !r.is_ceiling()) {
        let pairs: Vec<(f64, f64)> = rounds
            .iter()
            .filter_map(|(other, this)| {
                Some((
                    other.get(&b.name)?.statistics.median,
                    this.get(&b.name)?.statistics.median,
                ))
            })
            .collect();
        if pairs.is_empty() {
            missing.push(b.name.clone());
            continue;
        }
        let mut per_round: Vec<f64> = pairs
            .iter()
            .map(|&(before, after)| worse(before, after, b.higher_is_better))
            .collect();
        let worse_pct = median(&mut per_round);
        let mut deviations: Vec<f64> = per_round.iter().map(|w| (w - worse_pct).abs()).collect();
        let noise_pct = 2.0 * median(&mut deviations);
        let (low, high) = paired_interval(&b.name, &per_round);
        let judged = per_round.len() >= MIN_ROUNDS;
        changes.push(Change {
            name: b.name.clone(),
            unit: b.unit.clone(),
            before: median(&mut pairs.iter().map(|p| p.0).collect::<Vec<_>>()),
            after: median(&mut pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
            worse_pct,
            machine: 1.0,
            interval_pct: (low, high),
            noise_pct,
            between_runs: (noise_pct, true),
            regression: judged && beyond(worse_pct, low, noise_pct, max_regression),
            improvement: judged && beyond(-worse_pct, -high, noise_pct, max_regression),
            transient: false,
            judged,
        });
    }
    let added = rounds
        .iter()
        .flat_map(|(_, this)| this.records.iter())
        .filter(|r| !r.is_ceiling() && first.get(&r.name).is_none())
        .map(|r| r.name.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Comparison {
        changes,
        missing,
        added,
        max_regression,
    }
}

/// The 95 % bootstrap interval of the median of per-round changes, the
/// rounds resampled (seeded by the benchmark's name).
fn paired_interval(name: &str, per_round: &[f64]) -> (f64, f64) {
    let mut rng = SplitMix::seeded(name);
    let mut sample = per_round.to_vec();
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for x in &mut sample {
                *x = per_round[rng.below(per_round.len())];
            }
            median(&mut sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (
        crate::stats::percentile_sorted(&medians, 2.5),
        crate::stats::percentile_sorted(&medians, 97.5),
    )
}

/// `report` as a baseline to save over `previous` (the same name's last
/// save, if any): each record keeps the medians of the last [`HISTORY`]
/// saves, its own included, for the between-run noise.
pub fn as_baseline(mut report: Report, previous: Option<&Report>) -> Report {
    for r in &mut report.records {
        let mut medians = previous
            .and_then(|p| p.get(&r.name))
            .map(|p| {
                if p.baseline_medians.is_empty() {
                    vec![p.statistics.median]
                } else {
                    p.baseline_medians.clone()
                }
            })
            .unwrap_or_default();
        medians.push(r.statistics.median);
        let mut refs = previous
            .and_then(|p| p.get(&r.name))
            .map(
                |p| match (p.baseline_references.is_empty(), p.reference_s) {
                    (true, Some(x)) if p.baseline_medians.is_empty() => vec![x],
                    _ => p.baseline_references.clone(),
                },
            )
            .unwrap_or_default();
        refs.extend(r.reference_s);
        let skip = medians.len().saturating_sub(HISTORY);
        r.baseline_medians = medians.split_off(skip);
        // References only when every kept save has one.
        r.baseline_references = if refs.len() >= r.baseline_medians.len() {
            refs.split_off(refs.len() - r.baseline_medians.len())
        } else {
            Vec::new()
        };
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Record;

    fn report(records: Vec<Record>) -> Report {
        let mut r = crate::report::tests::sample();
        r.records = records;
        r
    }

    fn time(name: &str, samples: &[f64]) -> Record {
        Record::new(name, "", "s", false, samples.to_vec())
    }

    fn rate(name: &str, samples: &[f64]) -> Record {
        Record::new(name, "", "events/s", true, samples.to_vec())
    }

    /// A baseline saved three times with these medians.
    fn saved(mut record: Record, medians: &[f64]) -> Record {
        record.baseline_medians = medians.to_vec();
        record
    }

    #[test]
    fn a_regression_needs_threshold_noise_and_agreeing_samples() {
        let base = report(vec![
            saved(
                time("quiet", &[1.0, 1.0, 1.0, 1.0, 1.0]),
                &[1.0, 1.01, 0.99],
            ),
            saved(time("noisy", &[1.0, 0.7, 1.3, 1.0, 1.25]), &[1.0, 1.0, 1.0]),
            saved(rate("rate", &[100.0, 100.0, 100.0]), &[100.0, 101.0, 99.0]),
            // Its saves moved by a third: a 30 % change is within them.
            saved(time("drifty", &[1.0, 1.0, 1.0]), &[1.0, 1.4, 1.2]),
            time("once", &[1.0, 1.0, 1.0]),
            time("gone", &[1.0]),
        ]);
        let after = report(vec![
            // +20 %, quiet, the saves within 2 %: a regression.
            time("quiet", &[1.2, 1.2, 1.2, 1.2, 1.2]),
            // +20 %, but noise 2 × 25 % = 50 %: not one.
            time("noisy", &[1.2, 0.9, 1.5, 1.2, 1.45]),
            // −20 % of a rate is worse by 20 %.
            rate("rate", &[80.0, 80.0, 80.0]),
            time("drifty", &[1.3, 1.3, 1.3]),
            // +20 % against a baseline saved once: within the assumed 50 %.
            time("once", &[1.2, 1.2, 1.2]),
            time("new", &[1.0]),
        ]);
        let c = compare(&base, &after, 10.0);
        let by = |n: &str| c.changes.iter().find(|x| x.name == n).unwrap().clone();
        assert!(by("quiet").regression);
        assert!((by("quiet").worse_pct - 20.0).abs() < 1e-9);
        assert!(!by("noisy").regression, "{:?}", by("noisy"));
        assert!(by("noisy").noise_pct >= 40.0);
        assert!(by("rate").regression);
        assert!(!by("drifty").regression, "{:?}", by("drifty"));
        let (drift, measured) = by("drifty").between_runs;
        assert!(measured && (drift - 200.0 / 3.0).abs() < 1e-9, "{drift}");
        assert!(!by("once").regression);
        assert_eq!(by("once").between_runs, (BETWEEN_RUNS_PCT, false));
        assert!(c.regressed());
        assert_eq!(c.missing, ["gone"]);
        assert_eq!(c.added, ["new"]);
        assert!(c.table().contains("REGRESSION"));
        assert!(c.table().contains("between-run noise assumed"));
        // A higher threshold lets the same changes through.
        assert!(!compare(&base, &after, 25.0).regressed());
        // Twice as slow is a regression even against a baseline saved once.
        let slow = report(vec![time("once", &[2.0, 2.1, 1.9])]);
        assert!(compare(&base, &slow, 10.0).regressed());
        // Faster is never a regression.
        let faster = report(vec![time("quiet", &[0.5; 5])]);
        let c = compare(&base, &faster, 10.0);
        assert!(!c.regressed());
        assert!(c.changes[0].improvement);
    }

    /// Medians that moved past the threshold while the samples overlap:
    /// the interval's low end is under the threshold, so not a regression.
    #[test]
    fn overlapping_samples_are_not_a_regression() {
        let base = report(vec![saved(time("t", &[1.0, 1.0, 1.3]), &[1.0, 1.0, 1.0])]);
        let after = report(vec![time("t", &[1.0, 1.3, 1.3])]);
        let c = compare(&base, &after, 10.0);
        let t = &c.changes[0];
        assert!(t.worse_pct > 10.0, "{t:?}");
        assert!(t.interval_pct.0 <= 10.0, "{t:?}");
        assert!(!t.regression);
        // The interval is repeatable.
        assert_eq!(compare(&base, &after, 10.0), c);
    }

    #[test]
    fn only_regressions_a_rerun_shows_again_are_kept() {
        let base = report(vec![
            saved(time("planning/a", &[1.0; 3]), &[1.0; 3]),
            saved(time("http/b", &[1.0; 3]), &[1.0; 3]),
        ]);
        let spiked = report(vec![
            time("planning/a", &[2.0; 3]),
            time("http/b", &[2.0; 3]),
        ]);
        let mut c = compare(&base, &spiked, 10.0);
        assert_eq!(c.regressed_suites(), ["http", "planning"]);
        let rerun = report(vec![
            time("planning/a", &[2.0; 3]),
            time("http/b", &[1.0; 3]),
        ]);
        c.confirm(&compare(&base, &rerun, 10.0));
        let by = |n: &str| c.changes.iter().find(|x| x.name == n).unwrap().clone();
        assert!(by("planning/a").regression);
        assert!(!by("http/b").regression && by("http/b").transient);
        assert_eq!(by("http/b").verdict(), "transient (not on a rerun)");
        assert!(c.regressed());
    }

    /// Everything twice as slow, the reference too: the machine, not the
    /// code. Four times as slow with the reference twice: the code.
    #[test]
    fn a_slower_machine_is_not_slower_code() {
        let with_reference = |mut r: Record, reference: f64| {
            r.reference_s = Some(reference);
            r
        };
        let base = report(vec![
            with_reference(saved(time("planning/t", &[1.0; 3]), &[1.0; 3]), 0.001),
            with_reference(saved(rate("cache/r", &[100.0; 3]), &[100.0; 3]), 0.001),
            with_reference(
                Record::new("planning/m", "", "bytes", false, vec![100.0; 3]),
                0.001,
            ),
            with_reference(saved(time("events/e", &[1.0; 3]), &[1.0; 3]), 0.001),
        ]);
        let slow_machine = report(vec![
            with_reference(time("planning/t", &[2.0; 3]), 0.002),
            with_reference(rate("cache/r", &[50.0; 3]), 0.002),
            with_reference(
                Record::new("planning/m", "", "bytes", false, vec![200.0; 3]),
                0.002,
            ),
            with_reference(time("events/e", &[2.0; 3]), 0.002),
        ]);
        let c = compare(&base, &slow_machine, 10.0);
        let by = |n: &str| c.changes.iter().find(|x| x.name == n).unwrap().clone();
        let (t, r) = (by("planning/t"), by("cache/r"));
        assert!(!t.regression && t.worse_pct.abs() < 1e-9, "{t:?}");
        assert!(!r.regression && r.worse_pct.abs() < 1e-9, "{r:?}");
        assert!((t.machine - 2.0).abs() < 1e-9);
        // Bytes, and figures of threads and disks, are compared as measured.
        assert!(by("planning/m").regression && by("planning/m").machine == 1.0);
        assert!(by("events/e").regression && by("events/e").machine == 1.0);
        let slow_code = report(vec![with_reference(time("planning/t", &[4.0; 3]), 0.002)]);
        let c = compare(&base, &slow_code, 10.0);
        assert!(c.changes[0].regression);
        assert!((c.changes[0].worse_pct - 100.0).abs() < 1e-9);
        // Saves on machines of different speeds: their range is taken on one.
        let mut drifted = saved(time("planning/t", &[1.0; 3]), &[1.0, 2.0, 1.5]);
        drifted.baseline_references = vec![0.001, 0.002, 0.0015];
        assert_eq!(between_runs(&drifted), (0.0, true));
    }

    #[test]
    fn a_baseline_keeps_the_medians_of_its_last_saves() {
        let mut previous = None;
        for i in 0..7 {
            let run = report(vec![time("t", &[f64::from(i)])]);
            previous = Some(as_baseline(run, previous.as_ref()));
        }
        let kept = &previous.as_ref().unwrap().records[0].baseline_medians;
        assert_eq!(kept, &[2.0, 3.0, 4.0, 5.0, 6.0]);
        // References, when every save has one, are kept alongside.
        let mut previous: Option<Report> = None;
        for i in 0..7 {
            let mut record = time("t", &[f64::from(i)]);
            record.reference_s = Some(f64::from(i) * 10.0);
            previous = Some(as_baseline(report(vec![record]), previous.as_ref()));
        }
        let r = &previous.unwrap().records[0];
        assert_eq!(r.baseline_references, [20.0, 30.0, 40.0, 50.0, 60.0]);
    }
}
