//! The `[quota]` section (issue 15): how client byte-rate quotas are measured. The quotas
//! themselves are data (set with `ledge quota set` or `kafka-configs --alter
//! --entity-type users`), kept in the security store; see `security/quota.rs`.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::security::quota::{QUOTA_WINDOW_SECONDS_MAX, QUOTA_WINDOWS_MAX, QuotaSettings};

/// Most `principals_tracked_max`.
pub const PRINCIPALS_TRACKED_MAX_LIMIT: usize = 10_000_000;

/// The `[quota]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaSection {
    window_seconds: Option<u64>,
    windows: Option<u32>,
    principals_tracked_max: Option<usize>,
}

impl QuotaSection {
    /// Checks every key; `origin` names the file in errors.
    pub(super) fn settings(self, origin: &str) -> Result<QuotaSettings, ConfigError> {
        let error =
            |key: &str, message: String| ConfigError(format!("{origin}: quota.{key}: {message}"));
        let mut settings = QuotaSettings::default();
        if let Some(seconds) = self.window_seconds {
            if !(1..=QUOTA_WINDOW_SECONDS_MAX).contains(&seconds) {
                return Err(error(
                    "window_seconds",
                    format!("{seconds} is outside 1..={QUOTA_WINDOW_SECONDS_MAX}"),
                ));
            }
            settings.window = Duration::from_secs(seconds);
        }
        if let Some(windows) = self.windows {
            if !(2..=QUOTA_WINDOWS_MAX).contains(&windows) {
                return Err(error(
                    "windows",
                    format!("{windows} is outside 2..={QUOTA_WINDOWS_MAX}"),
                ));
            }
            settings.windows = windows;
        }
        if let Some(max) = self.principals_tracked_max {
            if !(1..=PRINCIPALS_TRACKED_MAX_LIMIT).contains(&max) {
                return Err(error(
                    "principals_tracked_max",
                    format!("{max} is outside 1..={PRINCIPALS_TRACKED_MAX_LIMIT}"),
                ));
            }
            settings.principals_tracked_max = max;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<QuotaSettings, ConfigError> {
        toml::from_str::<QuotaSection>(text)
            .unwrap()
            .settings("test.toml")
    }

    #[test]
    fn defaults_are_kafkas_and_every_key_is_checked() {
        let settings = parse("").unwrap();
        assert_eq!(settings.window, Duration::from_secs(1));
        assert_eq!(settings.windows, 11);
        assert_eq!(settings.principals_tracked_max, 10_000);
        let settings =
            parse("window_seconds = 2\nwindows = 5\nprincipals_tracked_max = 7").unwrap();
        assert_eq!(settings.window, Duration::from_secs(2));
        assert_eq!(settings.windows, 5);
        assert_eq!(settings.principals_tracked_max, 7);
        let error = parse("windows = 1").unwrap_err();
        assert!(error.0.contains("quota.windows"), "{}", error.0);
        assert!(parse("window_seconds = 0").is_err());
        assert!(parse("principals_tracked_max = 0").is_err());
    }
}
