//! The one statistic the reports use: the median of repeated measurements (the mean of the
//! middle two for an even count), for timings and for plain numbers alike.

use std::time::Duration;

/// The median of `values`, `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// The median of `samples`; zero when there are none.
pub fn median_duration(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts_agree_for_numbers_and_durations() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let ms = Duration::from_millis;
        assert_eq!(median_duration(&[]), Duration::ZERO);
        assert_eq!(median_duration(&[ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median_duration(&[ms(4), ms(1), ms(3), ms(2)]), Duration::from_micros(2500));
    }
}
