//! The build's fixed time, `SOURCE_DATE_EPOCH`
//! (<https://reproducible-builds.org/specs/source-date-epoch/>), parsed once by the CLI
//! (`--source-date-epoch`, or the environment variable), and the dates written from it.
//!
//! One rule for every output: an empty value means unset; anything else must be a whole number
//! of seconds since 1970; the time is clamped into what a zip entry can carry (1980-01-01 to
//! 2107-12-31), so the layer zip, the files `verify` unpacks and the SBOM all carry the same
//! instant. Calendar arithmetic is the `time` crate's.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// 1980-01-01T00:00:00Z, the earliest time a zip entry (MS-DOS date) can carry.
pub(crate) const ZIP_TIME_MIN: i64 = 315_532_800;
/// 2107-12-31T23:59:58Z, the latest.
pub(crate) const ZIP_TIME_MAX: i64 = 4_354_819_198;

/// `SOURCE_DATE_EPOCH`, when set: seconds since 1970, already clamped into the zip range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceDateEpoch(Option<i64>);

impl SourceDateEpoch {
    /// Set to `seconds` (clamped into the zip range).
    pub(crate) fn at(seconds: i64) -> SourceDateEpoch {
        SourceDateEpoch(Some(seconds.clamp(ZIP_TIME_MIN, ZIP_TIME_MAX)))
    }

    /// The clamped seconds, when set.
    pub(crate) fn seconds(self) -> Option<i64> {
        self.0
    }

    /// The time every output uses: the set value, else `fallback` (clamped the same way).
    pub(crate) fn or(self, fallback: i64) -> i64 {
        self.0.unwrap_or(fallback.clamp(ZIP_TIME_MIN, ZIP_TIME_MAX))
    }
}

impl FromStr for SourceDateEpoch {
    type Err = String;

    fn from_str(text: &str) -> Result<SourceDateEpoch, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(SourceDateEpoch(None));
        }
        trimmed.parse::<u64>().ok().and_then(|seconds| i64::try_from(seconds).ok()).map(SourceDateEpoch::at).ok_or_else(
            || format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970; unset it or fix it"),
        )
    }
}

impl fmt::Display for SourceDateEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(seconds) => write!(f, "{seconds}"),
            None => Ok(()),
        }
    }
}

/// The UTC date and time of `seconds` since 1970.
pub(crate) fn utc(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds.clamp(ZIP_TIME_MIN, ZIP_TIME_MAX)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 UTC text of `seconds` since 1970: `1980-01-01T00:00:00Z`.
pub(crate) fn rfc3339(seconds: i64) -> String {
    let time = OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    time.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Seconds since 1970 of a TOML offset or local date-time (a local one is taken as UTC, a bare
/// date as its midnight); `None` for a bare time or a date `time` cannot represent.
pub(crate) fn toml_datetime_seconds(datetime: &toml::value::Datetime) -> Option<i64> {
    let date = datetime.date?;
    let month = time::Month::try_from(date.month).ok()?;
    let date = time::Date::from_calendar_date(i32::from(date.year), month, date.day).ok()?;
    let clock = match datetime.time {
        Some(clock) => time::Time::from_hms(clock.hour, clock.minute, clock.second.unwrap_or(0)).ok()?,
        None => time::Time::MIDNIGHT,
    };
    let offset = match datetime.offset {
        Some(toml::value::Offset::Custom { minutes }) => UtcOffset::from_whole_seconds(i32::from(minutes) * 60).ok()?,
        Some(toml::value::Offset::Z) | None => UtcOffset::UTC,
    };
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset).unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parse_for_every_output() {
        assert_eq!("".parse::<SourceDateEpoch>(), Ok(SourceDateEpoch::default()));
        assert_eq!("  ".parse::<SourceDateEpoch>(), Ok(SourceDateEpoch::default()));
        assert_eq!("1700000000".parse::<SourceDateEpoch>().unwrap().seconds(), Some(1_700_000_000));
        assert_eq!(" 1700000000\n".parse::<SourceDateEpoch>().unwrap().seconds(), Some(1_700_000_000));
        // Before 1980 a zip cannot say; every output takes 1980-01-01 instead of some taking 1970.
        assert_eq!("0".parse::<SourceDateEpoch>().unwrap().seconds(), Some(ZIP_TIME_MIN));
        assert_eq!("99999999999".parse::<SourceDateEpoch>().unwrap().seconds(), Some(ZIP_TIME_MAX));
        for bad in ["yesterday", "-1", "1.5", "1e9"] {
            assert_eq!(
                bad.parse::<SourceDateEpoch>().unwrap_err(),
                format!("SOURCE_DATE_EPOCH={bad:?} is not a number of seconds since 1970; unset it or fix it")
            );
        }
        assert_eq!(SourceDateEpoch::default().or(0), ZIP_TIME_MIN);
        assert_eq!(SourceDateEpoch::at(1_700_000_000).or(0), 1_700_000_000);
    }

    #[test]
    fn dates_convert_both_ways() {
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (315_532_800, "1980-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(seconds), text);
            let datetime: toml::value::Datetime = text.parse().unwrap();
            assert_eq!(toml_datetime_seconds(&datetime), Some(seconds), "{text}");
        }
        let offset: toml::value::Datetime = "2025-11-20T10:30:00+02:00".parse().unwrap();
        assert_eq!(rfc3339(toml_datetime_seconds(&offset).unwrap()), "2025-11-20T08:30:00Z");
        let local: toml::value::Datetime = "2025-11-20T10:30:00".parse().unwrap();
        assert_eq!(rfc3339(toml_datetime_seconds(&local).unwrap()), "2025-11-20T10:30:00Z");
        let date: toml::value::Datetime = "2025-11-20".parse().unwrap();
        assert_eq!(rfc3339(toml_datetime_seconds(&date).unwrap()), "2025-11-20T00:00:00Z");
        let time_only: toml::value::Datetime = "10:30:00".parse().unwrap();
        assert_eq!(toml_datetime_seconds(&time_only), None);
        let utc = utc(1_709_214_331);
        assert_eq!((utc.year(), u8::from(utc.month()), utc.day(), utc.hour()), (2024, 2, 29, 13));
    }
}
