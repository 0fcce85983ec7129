//! Logging of the store and the front-end: the output format (`--log-format text|json`) and
//! a filter that can be replaced while the process runs, through tracing-subscriber's reload
//! layer, so that `mailrootctl config set log-level N` takes effect on every node at once.
//!
//! # Levels
//! The four levels of the Windows POP3 service, each a tracing filter:
//!
//! | level | name    | filter                                                      |
//! |-------|---------|-------------------------------------------------------------|
//! | 0     | none    | `off`: nothing at all, not even errors                      |
//! | 1     | minimum | `warn`: warnings and errors                                 |
//! | 2     | medium  | `info`: also start/stop, connections to the store, changes  |
//! | 3     | maximum | `debug` for mailroot's own crates, `info` for the libraries  |
//!
//! Level 3 keeps the libraries (h2, hyper, tonic, rustls) at `info`: their debug output is
//! per-frame protocol chatter that would drown mailroot's own lines and cost CPU per call.
//! Until a level is set cluster-wide (and again after `config set log-level default`), the
//! start-up filter applies: `RUST_LOG`, or `info` without it.
//!
//! This module only applies levels; the store validates and stores them
//! (store-node/src/settings.rs) and pushes them over the settings stream.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use clap::{Args, ValueEnum};
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{self, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// The start-up filter when `RUST_LOG` is unset or unreadable.
pub const DEFAULT_FILTER: &str = "info";

/// mailroot's own crates (tracing targets), which level 3 turns to `debug`.
const OWN_CRATES: [&str; 6] = [
    "mailroot_store",
    "mailroot_frontend",
    "mailroot_common",
    "pop3",
    "smtp",
    "proto",
];

/// What `config set log-level` accepts, stated the same way wherever it is refused.
pub const LEVEL_RULE: &str = "use 0 (none), 1 (minimum), 2 (medium), 3 (maximum) or default";

/// Output format of the log lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// `--log-format`, shared by the store and the front-end.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on standard error: `text`, or `json` (one object per line) for log shippers.
    #[arg(long, env = "MAILROOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A cluster-wide log level (0..=3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogLevel(u32);

impl LogLevel {
    pub const NONE: LogLevel = LogLevel(0);
    pub const MAXIMUM: LogLevel = LogLevel(3);

    pub fn from_number(n: u32) -> Option<LogLevel> {
        (n <= Self::MAXIMUM.0).then_some(LogLevel(n))
    }

    /// `0`..`3` or the level's name (`none`, `minimum`, `medium`, `maximum`).
    pub fn parse(text: &str) -> Option<LogLevel> {
        let t = text.trim().to_ascii_lowercase();
        if let Some(level) = (0..=Self::MAXIMUM.0).map(LogLevel).find(|l| l.name() == t) {
            return Some(level);
        }
        t.parse().ok().and_then(LogLevel::from_number)
    }

    pub fn number(self) -> u32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "none",
            1 => "minimum",
            2 => "medium",
            _ => "maximum",
        }
    }

    /// The tracing filter directives of this level (see the module doc's table).
    pub fn directives(self) -> String {
        match self.0 {
            0 => "off".into(),
            1 => "warn".into(),
            2 => "info".into(),
            _ => {
                let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}=debug")).collect();
                format!("info,{}", own.join(","))
            }
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// The log output's part of its filter: events, never spans (see [`init`]).
struct EventsOnly;

impl<S> Filter<S> for EventsOnly {
    fn enabled(&self, meta: &Metadata<'_>, _: &layer::Context<'_, S>) -> bool {
        !meta.is_span()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::never()
        } else {
            Interest::always()
        }
    }

    /// No limit of its own: the level filter's hint is the output's.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The start-up directives (`RUST_LOG` or [`DEFAULT_FILTER`]), to return to.
    startup: String,
    /// The cluster-wide level in force; None: the start-up filter.
    applied: Mutex<Option<LogLevel>>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

fn startup_filter() -> (EnvFilter, String) {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(filter) => (filter, text),
            Err(_) => (EnvFilter::new(DEFAULT_FILTER), DEFAULT_FILTER.into()),
        },
        Err(_) => (EnvFilter::new(DEFAULT_FILTER), DEFAULT_FILTER.into()),
    }
}

/// Installs the process's subscriber: events to standard error in `format`, filtered by the
/// start-up filter until [`apply`] sets a level. Colours only on a terminal (a log file or a
/// shipper gets plain text). With `--otlp-endpoint`, also the OpenTelemetry layer of
/// `tracing_otel.rs` for `service` (`mailroot-store`, `mailroot-frontend`).
///
/// The level filter is the log output's own (a per-layer filter), not the subscriber's: the
/// trace layer has its own ([`crate::tracing_otel::OwnSpans`]), so log level 0 silences the
/// log but not the traces. Spans are for the traces only ([`EventsOnly`]): log lines carry
/// their own fields and look the same with traces on or off, and without `--otlp-endpoint` no
/// layer wants a span, so `info_span!` costs nothing. Call once, first thing in `main`, inside the runtime; the error
/// (an unusable `--otlp-endpoint`) names the flag.
pub fn init(
    format: LogFormat,
    otlp: &crate::flags::OtlpEndpoint,
    service: &'static str,
) -> Result<(), String> {
    let (filter, startup) = startup_filter();
    let (filter, handle) = reload::Layer::new(filter);
    let output: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut layers = vec![output.with_filter(filter.and(EventsOnly)).boxed()];
    if let Some(endpoint) = &otlp.endpoint {
        otlp.validate()?;
        let tracer = crate::tracing_otel::start(endpoint, service)?;
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(crate::tracing_otel::OwnSpans)
                .boxed(),
        );
    }
    tracing_subscriber::registry().with(layers).init();
    let _ = CONTROL.set(Control {
        handle,
        startup,
        applied: Mutex::new(None),
    });
    Ok(())
}

/// Applies the cluster-wide level as the settings carry it (None: back to the start-up
/// filter). Returns whether the filter changed; a no-op without [`init`] (libraries' tests)
/// and when the level is already in force (a settings stream reopened, another setting
/// changed).
pub fn apply(level: Option<u32>) -> bool {
    let Some(control) = CONTROL.get() else {
        return false;
    };
    let level = match level.map(LogLevel::from_number) {
        None => None,
        Some(Some(level)) => Some(level),
        Some(None) => {
            tracing::warn!(?level, "log level out of range; keeping the current filter");
            return false;
        }
    };
    let mut applied = control.applied.lock().unwrap_or_else(|p| p.into_inner());
    if *applied == level {
        return false;
    }
    let filter = match level {
        Some(l) => EnvFilter::new(l.directives()),
        None => EnvFilter::new(&control.startup),
    };
    // The change is announced at WARN so that it shows at level 1 too: an operator wondering
    // why a log went quiet or loud finds the reason in it. Going to 0 it is written under the
    // old filter (the last line before silence); otherwise under the new one.
    let announce = || match level {
        Some(l) => tracing::warn!(
            level = l.number(),
            name = l.name(),
            "log level set cluster-wide"
        ),
        None => {
            tracing::warn!(filter = %control.startup, "cluster-wide log level cleared; start-up filter again")
        }
    };
    if level == Some(LogLevel::NONE) {
        announce();
    }
    if let Err(e) = control.handle.reload(filter) {
        tracing::error!(error = %e, "log filter could not be replaced");
        return false;
    }
    if level != Some(LogLevel::NONE) {
        announce();
    }
    *applied = level;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_number_or_name() {
        for (text, n) in [
            ("0", 0),
            ("1", 1),
            ("2", 2),
            ("3", 3),
            ("maximum", 3),
            ("None", 0),
        ] {
            assert_eq!(
                LogLevel::parse(text).map(LogLevel::number),
                Some(n),
                "{text}"
            );
        }
        for bad in ["4", "7", "-1", "loud", "", "2.0", "debug"] {
            assert_eq!(LogLevel::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_level_is_a_valid_filter() {
        for n in 0..=3 {
            let level = LogLevel::from_number(n).expect("in range");
            EnvFilter::try_new(level.directives()).expect("valid directives");
        }
        assert_eq!(LogLevel::from_number(4), None);
        assert!(
            LogLevel::MAXIMUM
                .directives()
                .contains("mailroot_frontend=debug")
        );
    }
}
