//! Comparing two reports: the noise-aware regression rule.
//!
//! A benchmark regresses when it got worse by more than **both** the
//! threshold (`--max-regression PCT`, default 10 %) and its measured noise,
//! taken as twice the larger of the two runs' MAD/median. A change inside
//! the noise is reported, never counted.

use std::fmt::Write as _;

use crate::report::{Report, format_value};

/// One benchmark present in both reports.
#[derive(Debug, Clone, PartialEq)]
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
    /// The noise band, in percent: 2 × max(MAD/median) of the two runs.
    pub noise_pct: f64,
    /// Worse beyond both the threshold and the noise.
    pub regression: bool,
    /// Better beyond both.
    pub improvement: bool,
}

/// The comparison of a new report against a baseline.
#[derive(Debug, Clone, PartialEq)]
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

impl Comparison {
    /// Whether any benchmark regressed.
    pub fn regressed(&self) -> bool {
        self.changes.iter().any(|c| c.regression)
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
            "{:<width$}  {:>12} {:>12} {:>9} {:>8}  verdict (regression: worse by > {}% and > noise)",
            "benchmark", "baseline", "now", "change", "noise", self.max_regression
        );
        for c in &self.changes {
            let verdict = if c.regression {
                "REGRESSION"
            } else if c.improvement {
                "improved"
            } else if c.worse_pct.abs() <= c.noise_pct {
                "within noise"
            } else {
                "within threshold"
            };
            let _ = writeln!(
                out,
                "{:<width$}  {:>12} {:>12} {:>+8.1}% {:>7.1}%  {verdict}",
                c.name,
                format_value(c.before, &c.unit),
                format_value(c.after, &c.unit),
                // Shown as "worse" so that + always means slower/less.
                c.worse_pct,
                c.noise_pct,
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
            "{} compared, {} regression{} (change: + is worse)",
            self.changes.len(),
            n,
            if n == 1 { "" } else { "s" }
        );
        out
    }
}

/// Compares `after` against `baseline` with a threshold of `max_regression`
/// percent.
pub fn compare(baseline: &Report, after: &Report, max_regression: f64) -> Comparison {
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for b in &baseline.records {
        let Some(a) = after.get(&b.name) else {
            missing.push(b.name.clone());
            continue;
        };
        let (before, now) = (b.statistics.median, a.statistics.median);
        let raw = if before != 0.0 {
            (now - before) / before.abs() * 100.0
        } else {
            0.0
        };
        let worse_pct = if b.higher_is_better { -raw } else { raw };
        let noise_pct = 2.0 * b.statistics.noise.max(a.statistics.noise) * 100.0;
        changes.push(Change {
            name: b.name.clone(),
            unit: b.unit.clone(),
            before,
            after: now,
            worse_pct,
            noise_pct,
            regression: worse_pct > max_regression && worse_pct > noise_pct,
            improvement: -worse_pct > max_regression && -worse_pct > noise_pct,
        });
    }
    let added = after
        .records
        .iter()
        .filter(|r| baseline.get(&r.name).is_none())
        .map(|r| r.name.clone())
        .collect();
    Comparison {
        changes,
        missing,
        added,
        max_regression,
    }
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

    #[test]
    fn a_regression_needs_both_threshold_and_noise() {
        let base = report(vec![
            time("quiet", &[1.0, 1.0, 1.0, 1.0, 1.0]),
            time("noisy", &[1.0, 0.7, 1.3, 1.0, 1.25]),
            rate("rate", &[100.0, 100.0, 100.0]),
            time("gone", &[1.0]),
        ]);
        let after = report(vec![
            // +20 %, no noise: a regression.
            time("quiet", &[1.2, 1.2, 1.2, 1.2, 1.2]),
            // +20 %, but noise 2 × 25 % = 50 %: not one.
            time("noisy", &[1.2, 0.9, 1.5, 1.2, 1.45]),
            // −20 % of a rate is worse by 20 %.
            rate("rate", &[80.0, 80.0, 80.0]),
            time("new", &[1.0]),
        ]);
        let c = compare(&base, &after, 10.0);
        let by = |n: &str| c.changes.iter().find(|x| x.name == n).unwrap().clone();
        assert!(by("quiet").regression);
        assert!((by("quiet").worse_pct - 20.0).abs() < 1e-9);
        assert!(!by("noisy").regression, "{:?}", by("noisy"));
        assert!(by("noisy").noise_pct >= 40.0);
        assert!(by("rate").regression);
        assert!(c.regressed());
        assert_eq!(c.missing, ["gone"]);
        assert_eq!(c.added, ["new"]);
        assert!(c.table().contains("REGRESSION"));
        // A higher threshold lets the same changes through.
        assert!(!compare(&base, &after, 25.0).regressed());
        // Faster is never a regression.
        let faster = report(vec![time("quiet", &[0.5; 5])]);
        let c = compare(&base, &faster, 10.0);
        assert!(!c.regressed());
        assert!(c.changes[0].improvement);
    }
}
