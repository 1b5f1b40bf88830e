//! Line charts as inline SVG, shared by `baton load`'s and `baton bench`'s
//! HTML reports: no scripts, no fonts fetched, readable offline.
//!
//! What a reader needs from an axis is decided here once: ticks on round
//! values (1, 2 or 5 times a power of ten, or decades on a log axis), labels
//! in the quantity's own unit (`250 ms`, `1.5k`, `25%`; never an SI prefix
//! on a fraction), as many decimals as the step needs and no more (so no two
//! labels read the same), whole numbers on axes of things counted whole
//! (users), and the unit in the axis title.

use std::fmt::Write as _;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colours of the series, in order.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// What an axis' values are, which decides how its ticks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A duration in seconds: `250 ms`, `1.5 s`, `20 µs`.
    Seconds,
    /// A quantity (a rate, a size): `840`, `1.5k`, `2M`.
    Count,
    /// A quantity counted whole (users, tasks): ticks only on integers.
    Whole,
    /// A fraction of 1: `25%`.
    Fraction,
}

/// One axis: its title, unit and scale.
#[derive(Debug, Clone)]
pub struct Axis {
    /// The title (the unit in words, e.g. `events/s`).
    pub title: String,
    /// How values read.
    pub unit: Unit,
    /// Logarithmic (decades) rather than linear.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(title: impl Into<String>, unit: Unit) -> Axis {
        Axis {
            title: title.into(),
            unit,
            log: false,
        }
    }

    /// A logarithmic axis.
    pub fn log(title: impl Into<String>, unit: Unit) -> Axis {
        Axis {
            title: title.into(),
            unit,
            log: true,
        }
    }
}

/// One line (or set of points) on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// Its colour (`None`: the palette's, by position).
    pub colour: Option<&'static str>,
    /// (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Draw a marker at each point (measurements); a dashed line without
    /// markers otherwise (fits).
    pub markers: bool,
}

impl Series {
    /// Measured points: markers and a solid line.
    pub fn measured(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            colour: None,
            points,
            markers: true,
        }
    }

    /// A line without markers, in `colour` (time series).
    pub fn line(name: impl Into<String>, colour: &'static str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            colour: Some(colour),
            points,
            markers: false,
        }
    }

    /// A fitted curve: dashed, no markers.
    pub fn fit(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            colour: None,
            points,
            markers: false,
        }
    }
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Drawn above the plot.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Its lines.
    pub series: Vec<Series>,
    /// Size in pixels (width, height).
    pub size: (f64, f64),
}

/// Where ticks go on an axis and how far it reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// The lowest value shown.
    pub lo: f64,
    /// The highest value shown.
    pub hi: f64,
    /// Tick positions, from `lo` to `hi`.
    pub ticks: Vec<f64>,
    /// The distance between ticks (linear axes; 0 on log axes).
    pub step: f64,
    log: bool,
}

/// 1, 2 or 5 times a power of ten, the smallest at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

impl Scale {
    /// The scale of an axis over `values` (non-finite ones, and on a log
    /// axis those ≤ 0, are ignored): linear axes start at 0 (or below, for
    /// negative values) and end on the first round tick at or past the
    /// largest value, with about five steps; log axes span whole decades.
    pub fn of(values: impl Iterator<Item = f64>, axis: &Axis) -> Scale {
        let (mut lo, mut hi) = values
            .filter(|v| v.is_finite() && (!axis.log || *v > 0.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if axis.log {
            if !lo.is_finite() {
                (lo, hi) = (1.0, 10.0);
            }
            let (a, mut b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
            if b <= a {
                b = a + 1;
            }
            let every = ((b - a + 7) / 8).max(1);
            let ticks = (a..=b)
                .filter(|e| (e - a) % every == 0)
                .map(|e| 10f64.powi(e))
                .collect();
            return Scale {
                lo: 10f64.powi(a),
                hi: 10f64.powi(b),
                ticks,
                step: 0.0,
                log: true,
            };
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        lo = lo.min(0.0);
        if hi <= lo {
            hi = lo + 1.0;
        }
        let mut step = nice_step((hi - lo) / 5.0);
        if axis.unit == Unit::Whole {
            step = step.max(1.0);
        }
        let first = (lo / step).floor() as i64;
        let last = ((hi / step).ceil() as i64).max(first + 1);
        let ticks = (first..=last).map(|i| i as f64 * step).collect();
        Scale {
            lo: first as f64 * step,
            hi: last as f64 * step,
            ticks,
            step,
            log: false,
        }
    }

    /// Where `v` falls, from 0 (`lo`) to 1 (`hi`).
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.max(1e-300).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// The label of the tick at `v`.
    pub fn label(&self, v: f64, unit: Unit) -> String {
        label(v, unit, self.step)
    }
}

/// `v` with `decimals` decimals, trailing zeros dropped.
fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// Decimals that tell ticks `step` apart once divided by `scale` (a value
/// itself on a log axis, where `step` is 0).
fn decimals(v: f64, step: f64, scale: f64) -> usize {
    let unit = if step > 0.0 { step } else { v.abs() } / scale;
    if unit <= 0.0 || !unit.is_finite() {
        return 0;
    }
    (-unit.log10().floor()).max(0.0) as usize
}

/// A tick's label: `v` in `unit`, precise enough for ticks `step` apart.
pub fn label(v: f64, unit: Unit, step: f64) -> String {
    if v == 0.0 {
        return match unit {
            Unit::Seconds => "0 s".into(),
            Unit::Fraction => "0%".into(),
            _ => "0".into(),
        };
    }
    let a = v.abs();
    match unit {
        Unit::Seconds => {
            let (scale, suffix) = if a >= 1.0 {
                (1.0, "s")
            } else if a >= 1e-3 {
                (1e-3, "ms")
            } else if a >= 1e-6 {
                (1e-6, "µs")
            } else {
                (1e-9, "ns")
            };
            format!(
                "{} {suffix}",
                fixed(v / scale, decimals(v, step, scale).min(3))
            )
        }
        Unit::Count | Unit::Whole => {
            let (scale, suffix) = if a >= 1e9 {
                (1e9, "G")
            } else if a >= 1e6 {
                (1e6, "M")
            } else if a >= 1e3 {
                (1e3, "k")
            } else {
                (1.0, "")
            };
            format!(
                "{}{suffix}",
                fixed(v / scale, decimals(v, step, scale).min(6))
            )
        }
        Unit::Fraction => format!("{}%", fixed(v * 100.0, decimals(v, step, 0.01).min(4))),
    }
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let (w, h) = self.size;
        let (left, right, top, bottom) = (70.0, 170.0, 30.0, 46.0);
        let xs = Scale::of(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
            &self.x,
        );
        let ys = Scale::of(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
            &self.y,
        );
        let pw = w - left - right;
        let ph = h - top - bottom;
        let px = |v: f64| left + xs.frac(v) * pw;
        let py = |v: f64| top + (1.0 - ys.frac(v)) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11" role="img"><title>{t}</title><text x="{left}" y="18" font-size="13" font-weight="bold">{t}</text>"#,
            t = esc(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for &t in &xs.ticks {
            let x = px(t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                top + ph,
                top + ph + 14.0,
                esc(&xs.label(t, self.x.unit))
            );
        }
        for &t in &ys.ticks {
            let y = py(t);
            let _ = write!(
                s,
                r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                left + pw,
                left - 4.0,
                y + 4.0,
                esc(&ys.label(t, self.y.unit))
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            h - 10.0,
            esc(&self.x.title),
            top + ph / 2.0,
            esc(&self.y.title)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = series.colour.unwrap_or(PALETTE[i % PALETTE.len()]);
            let pts: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|p| {
                    p.0.is_finite()
                        && p.1.is_finite()
                        && (!self.x.log || p.0 > 0.0)
                        && (!self.y.log || p.1 > 0.0)
                })
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let dash = if series.markers || series.colour.is_some() {
                ""
            } else {
                r#" stroke-dasharray="5 3""#
            };
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                line.join(" ")
            );
            if series.markers {
                for (x, y) in &pts {
                    let _ = write!(
                        s,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
                    );
                }
            }
            let ly = top + 12.0 + i as f64 * 16.0;
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + pw + 10.0,
                left + pw + 28.0,
                left + pw + 32.0,
                ly + 4.0,
                esc(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[f64], axis: &Axis) -> Vec<String> {
        let s = Scale::of(values.iter().copied(), axis);
        s.ticks.iter().map(|&t| s.label(t, axis.unit)).collect()
    }

    #[test]
    fn linear_ticks_are_round_and_cover_the_values() {
        let axis = Axis::linear("req/s", Unit::Count);
        let s = Scale::of([12.0, 714.4].into_iter(), &axis);
        assert_eq!(s.step, 200.0);
        assert_eq!(s.ticks, vec![0.0, 200.0, 400.0, 600.0, 800.0]);
        assert_eq!(
            labels(&[12.0, 714.4], &axis),
            ["0", "200", "400", "600", "800"]
        );
        assert_eq!(
            labels(&[950_000.0, 1_480_000.0], &axis),
            ["0", "500k", "1M", "1.5M"]
        );
    }

    #[test]
    fn seconds_read_in_their_unit_and_fractions_never_take_a_prefix() {
        let secs = Axis::linear("time", Unit::Seconds);
        assert_eq!(
            labels(&[0.84], &secs),
            ["0 s", "200 ms", "400 ms", "600 ms", "800 ms", "1 s"]
        );
        assert_eq!(labels(&[2.4], &secs)[1..3], ["500 ms", "1 s"]);
        assert_eq!(labels(&[3.0e-5], &secs)[1], "10 µs");
        let frac = Axis::linear("fraction ≤ latency", Unit::Fraction);
        assert_eq!(
            labels(&[0.84], &frac),
            ["0%", "20%", "40%", "60%", "80%", "100%"]
        );
        let log = Axis::log("latency", Unit::Seconds);
        assert_eq!(
            labels(&[2e-6, 3e-3], &log),
            ["1 µs", "10 µs", "100 µs", "1 ms", "10 ms"]
        );
    }

    #[test]
    fn short_runs_and_few_users_get_distinct_whole_labels() {
        // A 2.2 s run: no label twice.
        let t = labels(&[0.0, 2.2], &Axis::linear("elapsed", Unit::Seconds));
        let mut unique = t.clone();
        unique.dedup();
        assert_eq!(t, unique, "{t:?}");
        // Three users: ticks on whole users only.
        assert_eq!(
            labels(&[3.0], &Axis::linear("users", Unit::Whole)),
            ["0", "1", "2", "3"]
        );
    }

    #[test]
    fn nothing_to_draw_still_has_a_scale() {
        for axis in [Axis::linear("a", Unit::Count), Axis::log("b", Unit::Count)] {
            let s = Scale::of(std::iter::empty(), &axis);
            assert!(s.hi > s.lo && !s.ticks.is_empty());
        }
        let chart = Chart {
            title: "<empty>".into(),
            x: Axis::linear("x", Unit::Count),
            y: Axis::linear("y", Unit::Count),
            series: vec![Series::measured("none", vec![(f64::NAN, 1.0)])],
            size: (640.0, 300.0),
        };
        let svg = chart.svg();
        assert!(
            svg.contains("&lt;empty&gt;") && !svg.contains("NaN"),
            "{svg}"
        );
    }
}
