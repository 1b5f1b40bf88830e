//! Statistics over repeated samples, and the least-squares fit used by the
//! `scaling` suite.

use serde::{Deserialize, Serialize};

/// A result whose median absolute deviation exceeds this fraction of its
/// median is flagged as noisy.
pub const NOISY: f64 = 0.10;

/// Summary statistics of one benchmark's samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median (mean of the two middle samples for an even count).
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 95th percentile (linear interpolation between closest ranks).
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Median absolute deviation from the median (unscaled).
    pub mad: f64,
    /// `mad / median` (0 when the median is 0).
    pub noise: f64,
    /// Whether `noise` exceeds [`NOISY`].
    pub noisy: bool,
}

impl Statistics {
    /// Statistics of `samples` (at least one; NaNs are not expected).
    pub fn of(samples: &[f64]) -> Statistics {
        let mut s: Vec<f64> = samples.to_vec();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            s.push(f64::NAN);
        }
        let median = percentile_sorted(&s, 50.0);
        let mad = mad_of(&s, median);
        let noise = if median != 0.0 {
            (mad / median).abs()
        } else {
            0.0
        };
        Statistics {
            n: samples.len(),
            min: s[0],
            median,
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p95: percentile_sorted(&s, 95.0),
            p99: percentile_sorted(&s, 99.0),
            max: s[s.len() - 1],
            mad,
            noise,
            noisy: noise > NOISY,
        }
    }

    /// The named statistic (`min`, `median`, `mean`, `p95`, `p99`, `max`).
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "min" => self.min,
            "median" | "p50" => self.median,
            "mean" => self.mean,
            "p95" => self.p95,
            "p99" => self.p99,
            "max" => self.max,
            _ => return None,
        })
    }
}

/// The `p`-th percentile (0–100) of sorted samples, interpolating linearly
/// between the closest ranks (the definition numpy uses by default).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// The median of `samples`.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, 50.0)
}

fn mad_of(samples: &[f64], median: f64) -> f64 {
    let dev: Vec<f64> = samples.iter().map(|x| (x - median).abs()).collect();
    self::median(&dev)
}

/// A least-squares fit of `log(y) = intercept + slope · log(x)`: a power law
/// `y = e^intercept · x^slope`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// What was fitted, e.g. `planning/random: total time vs tasks`.
    pub name: String,
    /// The x values (sizes, counts, producers).
    pub x: Vec<f64>,
    /// The y values (medians).
    pub y: Vec<f64>,
    /// The exponent.
    pub slope: f64,
    /// The log-space intercept.
    pub intercept: f64,
    /// Coefficient of determination in log space.
    pub r2: f64,
    /// `linear` (slope within 0.9–1.1 and R² ≥ 0.99), `sublinear`,
    /// `superlinear`, or `inconclusive` (R² < 0.99), always stated with the
    /// numbers.
    pub verdict: String,
}

impl Fit {
    /// Fits `points` (x, y); points with a non-positive coordinate are
    /// ignored (no logarithm). Needs two points with distinct x.
    pub fn power_law(name: &str, points: &[(f64, f64)]) -> Option<Fit> {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|&(x, y)| x > 0.0 && y > 0.0)
            .collect();
        if pts.len() < 2 {
            return None;
        }
        let lx: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
        let ly: Vec<f64> = pts.iter().map(|p| p.1.ln()).collect();
        let n = pts.len() as f64;
        let mx = lx.iter().sum::<f64>() / n;
        let my = ly.iter().sum::<f64>() / n;
        let sxx: f64 = lx.iter().map(|x| (x - mx).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let sxy: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
        let slope = sxy / sxx;
        let intercept = my - slope * mx;
        let ss_tot: f64 = ly.iter().map(|y| (y - my).powi(2)).sum();
        let ss_res: f64 = lx
            .iter()
            .zip(&ly)
            .map(|(x, y)| (y - (intercept + slope * x)).powi(2))
            .sum();
        let r2 = if ss_tot == 0.0 {
            1.0
        } else {
            1.0 - ss_res / ss_tot
        };
        let verdict = if r2 < 0.99 {
            "inconclusive"
        } else if (0.9..=1.1).contains(&slope) {
            "linear"
        } else if slope < 0.9 {
            "sublinear"
        } else {
            "superlinear"
        };
        Some(Fit {
            name: name.to_string(),
            x: pts.iter().map(|p| p.0).collect(),
            y: pts.iter().map(|p| p.1).collect(),
            slope,
            intercept,
            r2,
            verdict: verdict.to_string(),
        })
    }

    /// One line: the verdict with its numbers.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} (slope {:.3}, R² {:.4}, {} points, {}–{})",
            self.name,
            self.verdict,
            self.slope,
            self.r2,
            self.x.len(),
            self.x.first().copied().unwrap_or(0.0),
            self.x.last().copied().unwrap_or(0.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_percentiles_and_mad() {
        let s = Statistics::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.mean, 3.0);
        // deviations 2,2,0,1,1 → median 1
        assert_eq!(s.mad, 1.0);
        assert!((s.noise - 1.0 / 3.0).abs() < 1e-12);
        assert!(s.noisy);
        // rank 0.95 × 4 = 3.8 → 4 + 0.8 × 1
        assert!((s.p95 - 4.8).abs() < 1e-12);
        let even = Statistics::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(even.median, 2.5);
        let quiet = Statistics::of(&[100.0, 101.0, 99.0, 100.0, 100.5]);
        assert!(!quiet.noisy, "{quiet:?}");
        assert_eq!(quiet.get("p50"), Some(100.0));
        assert_eq!(quiet.get("nope"), None);
    }

    #[test]
    fn single_sample() {
        let s = Statistics::of(&[7.0]);
        assert_eq!(
            (s.min, s.median, s.p99, s.max, s.mad),
            (7.0, 7.0, 7.0, 7.0, 0.0)
        );
    }

    #[test]
    fn fit_recovers_exact_power_laws() {
        for (k, slope) in [(3.0, 1.0), (0.5, 2.0), (2e-6, 0.5)] {
            let pts: Vec<(f64, f64)> = [10.0, 100.0, 1e3, 1e4, 1e5]
                .iter()
                .map(|&x: &f64| (x, k * x.powf(slope)))
                .collect();
            let fit = Fit::power_law("t", &pts).unwrap();
            assert!((fit.slope - slope).abs() < 1e-9, "{fit:?}");
            assert!((fit.intercept - f64::ln(k)).abs() < 1e-9);
            assert!((fit.r2 - 1.0).abs() < 1e-12);
        }
        let linear = Fit::power_law("t", &[(1.0, 2.0), (10.0, 20.0), (100.0, 200.0)]).unwrap();
        assert_eq!(linear.verdict, "linear");
        let quad = Fit::power_law("t", &[(1.0, 1.0), (10.0, 100.0), (100.0, 1e4)]).unwrap();
        assert_eq!(quad.verdict, "superlinear");
        let scattered = Fit::power_law(
            "t",
            &[(1.0, 1.0), (10.0, 1.0), (100.0, 50.0), (1000.0, 2.0)],
        )
        .unwrap();
        assert_eq!(scattered.verdict, "inconclusive");
        assert!(Fit::power_law("t", &[(1.0, 1.0)]).is_none());
        assert!(Fit::power_law("t", &[(2.0, 1.0), (2.0, 3.0)]).is_none());
    }
}
