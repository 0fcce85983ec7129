//! The retry schedule of the outbound queue, from the cluster-wide settings: the first retry
//! after `queue-retry-min`, each next one after twice the last, at most `queue-retry-max`
//! (no jitter: the store alone decides when an entry is due, so there is no herd of clients
//! to spread); recipients still undelivered after `queue-lifetime` are bounced; one delay
//! notice after `queue-delay-warning` (0: none). RFC 5321 §4.5.4.1 asks for a retry interval
//! of at least 30 minutes and a give-up time of at least 4-5 days; the defaults are
//! Postfix's (5 minutes doubling to an hour, 5 days), which retry sooner but give up no
//! earlier.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use proto::v1::Settings;

use crate::settings::{
    DEFAULT_QUEUE_DELAY_WARNING, DEFAULT_QUEUE_LIFETIME, DEFAULT_QUEUE_RETRY_MAX,
    DEFAULT_QUEUE_RETRY_MIN,
};

/// More doublings than this reach any maximum the settings allow.
const MAX_DOUBLINGS: u32 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub lifetime: Duration,
    /// Zero: no delay notices.
    pub delay_warning: Duration,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            retry_min: DEFAULT_QUEUE_RETRY_MIN,
            retry_max: DEFAULT_QUEUE_RETRY_MAX,
            lifetime: DEFAULT_QUEUE_LIFETIME,
            delay_warning: DEFAULT_QUEUE_DELAY_WARNING,
        }
    }
}

impl Schedule {
    /// The schedule the settings give (unset fields: the defaults).
    pub fn of(s: &Settings) -> Schedule {
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        Schedule {
            retry_min: ms(s.queue_retry_min_ms, DEFAULT_QUEUE_RETRY_MIN),
            retry_max: ms(s.queue_retry_max_ms, DEFAULT_QUEUE_RETRY_MAX),
            lifetime: ms(s.queue_lifetime_ms, DEFAULT_QUEUE_LIFETIME),
            delay_warning: ms(s.queue_delay_warning_ms, DEFAULT_QUEUE_DELAY_WARNING),
        }
    }

    /// The wait before the next attempt, after `attempts` attempts (0: none yet, due now).
    pub fn delay(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let max = self.retry_max.max(Duration::from_secs(1));
        ExponentialBuilder::new()
            .with_min_delay(self.retry_min.min(max))
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(attempts.min(MAX_DOUBLINGS) as usize - 1)
            .unwrap_or(max)
    }

    pub fn lifetime_ms(&self) -> u64 {
        self.lifetime.as_millis() as u64
    }

    pub fn delay_warning_ms(&self) -> u64 {
        self.delay_warning.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_up_to_max() {
        let s = Schedule::default();
        let mins = |n| s.delay(n).as_secs() / 60;
        assert_eq!(s.delay(0), Duration::ZERO);
        assert_eq!([mins(1), mins(2), mins(3), mins(4)], [5, 10, 20, 40]);
        assert_eq!(mins(5), 60, "capped at queue-retry-max");
        assert_eq!(mins(1000), 60);
    }

    #[test]
    fn settings_override_the_defaults() {
        let s = Schedule::of(&Settings {
            queue_retry_min_ms: Some(30_000),
            queue_retry_max_ms: Some(100_000),
            queue_lifetime_ms: Some(3_600_000),
            queue_delay_warning_ms: Some(0),
            ..Settings::default()
        });
        assert_eq!(s.delay(1), Duration::from_secs(30));
        assert_eq!(s.delay(2), Duration::from_secs(60));
        assert_eq!(s.delay(3), Duration::from_secs(100));
        assert_eq!(s.lifetime_ms(), 3_600_000);
        assert_eq!(s.delay_warning_ms(), 0);
        assert_eq!(Schedule::of(&Settings::default()), Schedule::default());
    }
}
