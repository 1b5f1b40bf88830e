//! Backoff between attempts: exponential, capped, with jitter.

use std::time::Duration;

use baton_model::Backoff;
use baton_model::Rng;

/// The delay before attempt `next_attempt` (2 for the first retry):
/// `initial × multiplier^(next_attempt − 2)`, capped at `max`, then spread by
/// ± `jitter` (a fraction) so that retries of many tasks do not arrive together.
pub fn delay(backoff: &Backoff, next_attempt: u32, rng: &mut Rng) -> Duration {
    let exponent = next_attempt.saturating_sub(2).min(1024) as i32;
    let base = backoff.initial.as_secs_f64() * backoff.multiplier.powi(exponent);
    let capped = base.min(backoff.max.as_secs_f64());
    let spread = 1.0 + backoff.jitter * (2.0 * rng.unit() - 1.0);
    Duration::from_secs_f64((capped * spread).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: f64) -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter,
        }
    }

    #[test]
    fn grows_exponentially_to_the_cap() {
        let mut rng = Rng(1);
        let d: Vec<_> = (2..8)
            .map(|a| delay(&backoff(0.0), a, &mut rng).as_millis())
            .collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_varies() {
        let mut rng = Rng(2);
        let d: Vec<_> = (0..200)
            .map(|_| delay(&backoff(0.2), 3, &mut rng).as_secs_f64())
            .collect();
        assert!(d.iter().all(|&x| (0.16..=0.24).contains(&x)), "{d:?}");
        assert!(d.iter().any(|&x| x < 0.19) && d.iter().any(|&x| x > 0.21));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let mut rng = Rng(3);
        assert_eq!(
            delay(&backoff(0.0), u32::MAX, &mut rng),
            Duration::from_secs(1)
        );
    }
}
