//! Event-time windows: which windows a record belongs to, the watermark, lateness, which
//! windows close (suppress) and which windowed state expires (pure; time is passed in).
//!
//! Owns: the window kinds (tumbling, hopping, session) with their grace and retention and the
//! validation of those deploy settings; the watermark; the session merge decision.
//! Does not own: the state (`store`), the guest's fold or merge (the caller runs them), or
//! the clock (`now` is an argument of the future-timestamp check).
//!
//! Semantics follow Kafka Streams, where a user would compare:
//! - tumbling and hopping windows are half open, `[start, end)`, with `end = start + size`,
//!   aligned to the epoch (start is a multiple of the advance); a record at `t` belongs to
//!   every window with `start <= t < end`;
//! - session windows are closed, `[first, last]` record timestamps of the session; a record
//!   joins every session of its key within `gap` of it (`end >= t - gap` and
//!   `start <= t + gap`), so a record may bridge and merge several sessions;
//! - the watermark is the largest timestamp seen minus `grace` (Kafka's stream time minus
//!   grace); a window is *closed* once `end <= watermark` and a record that would update a
//!   closed window is *late*: counted and dropped, never applied;
//! - windowed state expires (is tombstoned) once `end + retention <= watermark`.
//!
//! Arithmetic saturates: timestamps are client bytes, and a timestamp near `i64::MAX` or
//! `i64::MIN` must neither panic nor wrap into a window far in the past.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default bound on the windows one record may fall into (`window.size_ms /
/// window.advance_ms` for hopping windows): a one-day window advancing by one millisecond
/// would otherwise make every record 86.4 million fold applications.
pub const WINDOWS_PER_RECORD_MAX_DEFAULT: u32 = 1024;

/// Default for `transforms.future_timestamp_ms_max`: a record more than one hour ahead of the
/// node's clock fails by the error policy, since it would move the watermark and close every
/// open window.
pub const FUTURE_TIMESTAMP_MS_MAX_DEFAULT: i64 = 60 * 60 * 1000;

/// A window's bounds in milliseconds since the epoch. For tumbling and hopping windows `end`
/// is exclusive; for session windows both are record timestamps (inclusive). In both cases
/// the window closes when `end <= watermark`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond of the window.
    pub start_ms: i64,
    /// End of the window (see the type's docs for inclusive or exclusive).
    pub end_ms: i64,
}

impl Window {
    /// A window from its bounds.
    #[must_use]
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        Self { start_ms, end_ms }
    }
}

/// The kind of window and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows: `[n * size, (n + 1) * size)`.
    Tumbling {
        /// `window.size_ms`.
        size_ms: i64,
    },
    /// Fixed-size windows starting every `advance`: a record is in `size / advance` of them.
    Hopping {
        /// `window.size_ms`.
        size_ms: i64,
        /// `window.advance_ms`; at most `size_ms`.
        advance_ms: i64,
    },
    /// Per-key sessions separated by at least `gap` of inactivity.
    Session {
        /// `window.gap_ms`.
        gap_ms: i64,
    },
}

/// A windowed deployment's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Tumbling, hopping or session.
    pub kind: WindowKind,
    /// `window.grace_ms`: how long after a window's end records for it are still accepted.
    pub grace_ms: i64,
    /// `window.retention_ms`: how long windowed state is kept (for queries) after its window
    /// closes: state of `w` expires once `w.end + retention <= watermark` (tumbling and
    /// hopping; see [`Self::expired_end_max`] for sessions).
    pub retention_ms: i64,
}

/// A window setting a deploy refuses; each names the setting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WindowSpecError {
    /// A size, advance or gap of zero or less.
    #[error("{setting} must be greater than 0 (got {value})")]
    NotPositive {
        /// The deploy setting, e.g. `window.size_ms`.
        setting: &'static str,
        /// The refused value.
        value: i64,
    },
    /// Grace or retention below zero.
    #[error("{setting} must not be negative (got {value})")]
    Negative {
        /// The deploy setting.
        setting: &'static str,
        /// The refused value.
        value: i64,
    },
    /// A hopping window advancing by more than its size would leave gaps no window covers.
    #[error(
        "window.advance_ms ({advance_ms}) must not exceed window.size_ms ({size_ms}); \
         use a tumbling window for advance = size"
    )]
    AdvanceExceedsSize {
        /// `window.advance_ms`.
        advance_ms: i64,
        /// `window.size_ms`.
        size_ms: i64,
    },
    /// A hopping window that would put one record into too many windows.
    #[error(
        "window.size_ms / window.advance_ms = {windows} windows per record exceeds the limit \
         of {limit} (transforms.windows_per_record_max)"
    )]
    TooManyWindowsPerRecord {
        /// Windows each record would fall into.
        windows: i64,
        /// The limit.
        limit: u32,
    },
}

/// Header of a windowed aggregate's change record: its window's start, ms since the epoch,
/// in decimal.
pub const WINDOW_START_HEADER: &str = "ledge.window.start";

/// Header of a windowed aggregate's change record: its window's end (exclusive for tumbling
/// and hopping windows, a session's last record), ms since the epoch, in decimal.
pub const WINDOW_END_HEADER: &str = "ledge.window.end";

/// Default `window.retention_ms`: a closed window's state stays queryable for a day (Kafka
/// Streams' default store retention).
pub const WINDOW_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;

/// Default `window.grace_ms`: no grace, a record is late once its window's end passed the
/// largest timestamp seen.
pub const WINDOW_GRACE_MS_DEFAULT: i64 = 0;

/// What a windowed aggregate writes to its output (`window.emit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// A change record for every commit that changed a window (default).
    #[default]
    Changes,
    /// One final record per window, when the watermark closes it.
    Suppress,
}

impl Emit {
    /// The setting's text.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Changes => "changes",
            Self::Suppress => "suppress",
        }
    }
}

/// A windowed aggregate as deployed: the windows and what it emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowDeploy {
    /// Kind, grace and retention.
    pub spec: WindowSpec,
    /// `window.emit`.
    pub emit: Emit,
}

/// The `window.*` deploy settings as given (`[[transform]]`, the deploy request, the CLI),
/// before defaults and validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSettings {
    /// `window.kind`: `tumbling`, `hopping`, `session`, or `None` (from the settings given).
    pub kind: Option<String>,
    /// `window.size_ms`.
    pub size_ms: Option<i64>,
    /// `window.advance_ms`.
    pub advance_ms: Option<i64>,
    /// `window.gap_ms`.
    pub gap_ms: Option<i64>,
    /// `window.grace_ms` (default [`WINDOW_GRACE_MS_DEFAULT`]).
    pub grace_ms: Option<i64>,
    /// `window.retention_ms` (default [`WINDOW_RETENTION_MS_DEFAULT`]).
    pub retention_ms: Option<i64>,
    /// `window.emit`: `changes` (default) or `suppress`.
    pub emit: Option<String>,
}

/// Window settings that do not make a window; each names the setting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WindowSettingsError {
    /// A setting the kind needs is missing.
    #[error("{setting} is required for a {kind} window")]
    Missing {
        /// The setting.
        setting: &'static str,
        /// The window kind.
        kind: &'static str,
    },
    /// A setting the kind does not take.
    #[error("{setting} does not apply to a {kind} window")]
    NotApplicable {
        /// The setting.
        setting: &'static str,
        /// The window kind.
        kind: &'static str,
    },
    /// Neither `window.size_ms` nor `window.gap_ms`.
    #[error(
        "a window needs window.size_ms (tumbling; with window.advance_ms hopping) or \
         window.gap_ms (session)"
    )]
    NoKind,
    /// An unknown `window.kind` or `window.emit`.
    #[error("{setting} must be one of {expected}, got {value:?}")]
    Unknown {
        /// The setting.
        setting: &'static str,
        /// The accepted values.
        expected: &'static str,
        /// The refused value.
        value: String,
    },
    /// Valid names but refused values.
    #[error(transparent)]
    Spec(#[from] WindowSpecError),
}

impl WindowSettings {
    /// The deployed window: the kind from `window.kind` or the settings given, defaults
    /// filled in, then [`WindowSpec::validate`].
    ///
    /// # Errors
    /// The first setting refused, named.
    pub fn resolve(
        &self,
        windows_per_record_max: u32,
    ) -> Result<WindowDeploy, WindowSettingsError> {
        let kind = match self.kind.as_deref().map(str::trim) {
            Some("tumbling") => "tumbling",
            Some("hopping") => "hopping",
            Some("session") => "session",
            Some("") | None => match (self.size_ms, self.advance_ms, self.gap_ms) {
                (Some(_), None, None) => "tumbling",
                (Some(_), Some(_), None) => "hopping",
                (None, None, Some(_)) => "session",
                (None, Some(_), None) => {
                    return Err(WindowSettingsError::Missing {
                        setting: "window.size_ms",
                        kind: "hopping",
                    });
                }
                (None, None, None) => return Err(WindowSettingsError::NoKind),
                (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                    return Err(WindowSettingsError::NotApplicable {
                        setting: "window.gap_ms",
                        kind: "tumbling or hopping",
                    });
                }
            },
            Some(other) => {
                return Err(WindowSettingsError::Unknown {
                    setting: "window.kind",
                    expected: "tumbling, hopping, session",
                    value: other.to_string(),
                });
            }
        };
        let required = |setting: &'static str, value: Option<i64>| {
            value.ok_or(WindowSettingsError::Missing { setting, kind })
        };
        let absent = |setting: &'static str, value: Option<i64>| match value {
            Some(_) => Err(WindowSettingsError::NotApplicable { setting, kind }),
            None => Ok(()),
        };
        let kind = match kind {
            "tumbling" => {
                absent("window.advance_ms", self.advance_ms)?;
                absent("window.gap_ms", self.gap_ms)?;
                WindowKind::Tumbling {
                    size_ms: required("window.size_ms", self.size_ms)?,
                }
            }
            "hopping" => {
                absent("window.gap_ms", self.gap_ms)?;
                WindowKind::Hopping {
                    size_ms: required("window.size_ms", self.size_ms)?,
                    advance_ms: required("window.advance_ms", self.advance_ms)?,
                }
            }
            _ => {
                absent("window.size_ms", self.size_ms)?;
                absent("window.advance_ms", self.advance_ms)?;
                WindowKind::Session {
                    gap_ms: required("window.gap_ms", self.gap_ms)?,
                }
            }
        };
        let emit = match self.emit.as_deref().map(str::trim) {
            Some("changes") | Some("") | None => Emit::Changes,
            Some("suppress") => Emit::Suppress,
            Some(other) => {
                return Err(WindowSettingsError::Unknown {
                    setting: "window.emit",
                    expected: "changes, suppress",
                    value: other.to_string(),
                });
            }
        };
        let spec = WindowSpec {
            kind,
            grace_ms: self.grace_ms.unwrap_or(WINDOW_GRACE_MS_DEFAULT),
            retention_ms: self.retention_ms.unwrap_or(WINDOW_RETENTION_MS_DEFAULT),
        };
        spec.validate(windows_per_record_max)?;
        Ok(WindowDeploy { spec, emit })
    }
}

impl WindowDeploy {
    /// The settings that deploy this window again (defaults written out).
    #[must_use]
    pub fn settings(&self) -> WindowSettings {
        let (kind, size_ms, advance_ms, gap_ms) = match self.spec.kind {
            WindowKind::Tumbling { size_ms } => ("tumbling", Some(size_ms), None, None),
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => ("hopping", Some(size_ms), Some(advance_ms), None),
            WindowKind::Session { gap_ms } => ("session", None, None, Some(gap_ms)),
        };
        WindowSettings {
            kind: Some(kind.to_string()),
            size_ms,
            advance_ms,
            gap_ms,
            grace_ms: Some(self.spec.grace_ms),
            retention_ms: Some(self.spec.retention_ms),
            emit: Some(self.emit.name().to_string()),
        }
    }
}

impl WindowSpec {
    /// Checks the settings; `windows_per_record_max` bounds hopping windows' overlap.
    ///
    /// # Errors
    /// The first refused setting, named.
    pub fn validate(&self, windows_per_record_max: u32) -> Result<(), WindowSpecError> {
        let positive = |setting: &'static str, value: i64| {
            if value > 0 {
                Ok(())
            } else {
                Err(WindowSpecError::NotPositive { setting, value })
            }
        };
        match self.kind {
            WindowKind::Tumbling { size_ms } => positive("window.size_ms", size_ms)?,
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => {
                positive("window.size_ms", size_ms)?;
                positive("window.advance_ms", advance_ms)?;
                if advance_ms > size_ms {
                    return Err(WindowSpecError::AdvanceExceedsSize {
                        advance_ms,
                        size_ms,
                    });
                }
                let windows = size_ms / advance_ms + i64::from(size_ms % advance_ms != 0);
                if windows > i64::from(windows_per_record_max) {
                    return Err(WindowSpecError::TooManyWindowsPerRecord {
                        windows,
                        limit: windows_per_record_max,
                    });
                }
            }
            WindowKind::Session { gap_ms } => positive("window.gap_ms", gap_ms)?,
        }
        if self.grace_ms < 0 {
            return Err(WindowSpecError::Negative {
                setting: "window.grace_ms",
                value: self.grace_ms,
            });
        }
        if self.retention_ms < 0 {
            return Err(WindowSpecError::Negative {
                setting: "window.retention_ms",
                value: self.retention_ms,
            });
        }
        Ok(())
    }

    /// The tumbling or hopping windows holding `timestamp_ms`, in start order. Session
    /// windows depend on the key's existing sessions: see [`session_decision`]; for them this
    /// returns the empty list.
    #[must_use]
    pub fn windows_for(&self, timestamp_ms: i64) -> Vec<Window> {
        match self.kind {
            WindowKind::Tumbling { size_ms } => fixed_windows(timestamp_ms, size_ms, size_ms),
            WindowKind::Hopping {
                size_ms,
                advance_ms,
            } => fixed_windows(timestamp_ms, size_ms, advance_ms),
            WindowKind::Session { .. } => Vec::new(),
        }
    }

    /// The largest stored window end that is closed at `watermark`. Tumbling and hopping
    /// ends are exclusive, so `end <= watermark` is closed; a session's end is its last
    /// record's timestamp (inclusive), so it behaves as the half-open `[first, last + 1)`:
    /// closed when `last < watermark` (Kafka's `end < stream time - grace`). `None` before
    /// any record: nothing is closed.
    #[must_use]
    pub fn closed_end_max(&self, watermark: &Watermark) -> Option<i64> {
        let mark = watermark.value_ms()?;
        Some(match self.kind {
            WindowKind::Session { .. } => mark.saturating_sub(1),
            WindowKind::Tumbling { .. } | WindowKind::Hopping { .. } => mark,
        })
    }

    /// Whether `window` is closed at `watermark` (see [`Self::closed_end_max`]).
    #[must_use]
    pub fn is_closed(&self, window: Window, watermark: &Watermark) -> bool {
        self.closed_end_max(watermark)
            .is_some_and(|end_max| window.end_ms <= end_max)
    }

    /// The largest stored window end whose state has expired at `watermark`: windowed state
    /// expires `retention` after it closes (`end + retention <= watermark` for half-open
    /// windows), for a range scan of the store's window-end index.
    #[must_use]
    pub fn expired_end_max(&self, watermark: &Watermark) -> Option<i64> {
        self.closed_end_max(watermark)
            .map(|end_max| end_max.saturating_sub(self.retention_ms))
    }

    /// Whether windowed state of `window` has expired at `watermark`.
    #[must_use]
    pub fn is_expired(&self, window: Window, watermark: &Watermark) -> bool {
        self.expired_end_max(watermark)
            .is_some_and(|end_max| window.end_ms <= end_max)
    }

    /// Windows that closed when the watermark moved from `before` to `after`, in end order
    /// then start order, each once. Suppression emits exactly these, once, as final results:
    /// the committed watermark only grows, so consecutive calls never return a window twice.
    #[must_use]
    pub fn closed_between(
        &self,
        windows: &[Window],
        before: &Watermark,
        after: &Watermark,
    ) -> Vec<Window> {
        closed_between(
            windows,
            self.closed_end_max(before),
            self.closed_end_max(after),
        )
    }
}

/// Windows `[s, s + size)` with `s` a multiple of `advance` and `s <= t < s + size`, in start
/// order. Computed in `i128` so no input overflows; bounds past `i64::MAX` or below
/// `i64::MIN` saturate (the window keeps the record's side of the bound).
fn fixed_windows(timestamp_ms: i64, size_ms: i64, advance_ms: i64) -> Vec<Window> {
    if size_ms <= 0 || advance_ms <= 0 {
        return Vec::new();
    }
    let t = i128::from(timestamp_ms);
    let size = i128::from(size_ms);
    let advance = i128::from(advance_ms);
    let last_start = t - t.rem_euclid(advance);
    let mut windows = Vec::new();
    let mut start = last_start;
    while start + size > t {
        let start_ms = i64::try_from(start).unwrap_or(i64::MIN);
        let end_ms = i64::try_from(start + size).unwrap_or(i64::MAX);
        windows.push(Window { start_ms, end_ms });
        start -= advance;
    }
    windows.reverse();
    windows
}

/// The watermark of a task: the largest timestamp seen minus grace. It never moves back (a
/// change of grace at a hot swap cannot reopen closed windows), and both numbers go into the
/// commit position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// Largest record timestamp observed (`None` before the first record).
    max_timestamp_ms: Option<i64>,
    /// `max_timestamp - grace`, never decreasing (`None` before the first record).
    value_ms: Option<i64>,
    grace_ms: i64,
}

impl Watermark {
    /// A watermark before any record.
    #[must_use]
    pub fn new(grace_ms: i64) -> Self {
        Self {
            max_timestamp_ms: None,
            value_ms: None,
            grace_ms: grace_ms.max(0),
        }
    }

    /// A watermark as committed (restore), with the current grace (which may differ from the
    /// grace it was committed with: the value never decreases).
    #[must_use]
    pub fn restored(max_timestamp_ms: Option<i64>, value_ms: Option<i64>, grace_ms: i64) -> Self {
        let mut mark = Self {
            max_timestamp_ms,
            value_ms,
            grace_ms: grace_ms.max(0),
        };
        if let Some(max) = max_timestamp_ms {
            mark.raise(max.saturating_sub(mark.grace_ms));
        }
        mark
    }

    fn raise(&mut self, candidate: i64) {
        self.value_ms = Some(self.value_ms.map_or(candidate, |v| v.max(candidate)));
    }

    /// Takes a record's timestamp into account; returns whether the watermark moved.
    pub fn observe(&mut self, timestamp_ms: i64) -> bool {
        let before = self.value_ms;
        self.max_timestamp_ms = Some(
            self.max_timestamp_ms
                .map_or(timestamp_ms, |m| m.max(timestamp_ms)),
        );
        self.raise(timestamp_ms.saturating_sub(self.grace_ms));
        before != self.value_ms
    }

    /// The watermark (`None` before the first record: nothing is closed).
    #[must_use]
    pub fn value_ms(&self) -> Option<i64> {
        self.value_ms
    }

    /// The largest timestamp observed.
    #[must_use]
    pub fn max_timestamp_ms(&self) -> Option<i64> {
        self.max_timestamp_ms
    }

    /// Whether the half-open (tumbling or hopping) `window` is closed: `end <= watermark`.
    /// Session windows close one millisecond later: see [`WindowSpec::closed_end_max`].
    #[must_use]
    pub fn is_closed(&self, window: Window) -> bool {
        self.value_ms.is_some_and(|mark| window.end_ms <= mark)
    }
}

/// Windows with `end_after < end <= end_max` (every end up to `end_max` when `end_after` is
/// `None`; none when `end_max` is `None`), in end order then start order, each once. The
/// bounds are closed ends ([`WindowSpec::closed_end_max`]), not watermarks.
#[must_use]
pub fn closed_between(windows: &[Window], before: Option<i64>, after: Option<i64>) -> Vec<Window> {
    let Some(after) = after else {
        return Vec::new();
    };
    let mut closed: Vec<Window> = windows
        .iter()
        .copied()
        .filter(|w| w.end_ms <= after && before.is_none_or(|b| w.end_ms > b))
        .collect();
    closed.sort_by(|a, b| match a.end_ms.cmp(&b.end_ms) {
        Ordering::Equal => a.start_ms.cmp(&b.start_ms),
        other => other,
    });
    closed.dedup();
    closed
}

/// Where a record's window assignment leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Open windows the record is applied to (start order).
    pub open: Vec<Window>,
    /// Closed windows the record is not applied to (late for them).
    pub late: Vec<Window>,
}

impl Assignment {
    /// Whether the record is late for every window it belongs to (counted as one late,
    /// dropped record).
    #[must_use]
    pub fn is_late(&self) -> bool {
        self.open.is_empty() && !self.late.is_empty()
    }
}

/// Observes `timestamp_ms` on the watermark (Kafka advances stream time before the check),
/// then splits the record's tumbling or hopping windows into open and late.
pub fn assign(spec: &WindowSpec, watermark: &mut Watermark, timestamp_ms: i64) -> Assignment {
    watermark.observe(timestamp_ms);
    let (late, open) = spec
        .windows_for(timestamp_ms)
        .into_iter()
        .partition(|w| watermark.is_closed(*w));
    Assignment { open, late }
}

/// A record timestamp too far ahead of the node's clock.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "record timestamp {timestamp_ms} is more than {limit_ms} ms ahead of the node's clock \
     ({now_ms}) (transforms.future_timestamp_ms_max): it would close every open window"
)]
pub struct FutureTimestamp {
    /// The record's timestamp.
    pub timestamp_ms: i64,
    /// The node's clock when checked.
    pub now_ms: i64,
    /// `transforms.future_timestamp_ms_max`.
    pub limit_ms: i64,
}

/// Refuses a timestamp more than `future_timestamp_ms_max` ahead of `now_ms`.
///
/// # Errors
/// [`FutureTimestamp`] naming the three numbers.
pub fn check_future_timestamp(
    timestamp_ms: i64,
    now_ms: i64,
    future_timestamp_ms_max: i64,
) -> Result<(), FutureTimestamp> {
    if timestamp_ms > now_ms.saturating_add(future_timestamp_ms_max) {
        return Err(FutureTimestamp {
            timestamp_ms,
            now_ms,
            limit_ms: future_timestamp_ms_max,
        });
    }
    Ok(())
}

/// What a record does to its key's session windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionDecision {
    /// No session within the gap: start `[t, t]`.
    New(Window),
    /// One session within the gap: the record joins it; `to` is its new bounds (equal to
    /// `from` when the record falls inside). The caller moves the state from `from` to `to`
    /// (the changelog key holds the bounds) and folds the record.
    Extend {
        /// The session's bounds now.
        from: Window,
        /// Its bounds with the record.
        to: Window,
    },
    /// The record bridges several sessions: the caller merges their states in the order given
    /// (the guest's `ledge_merge`, left to right), deletes each `from`, and stores the result
    /// at `to`, then folds the record.
    Merge {
        /// The sessions to merge, in start order (at least two).
        from: Vec<Window>,
        /// The merged session's bounds with the record.
        to: Window,
    },
    /// The resulting session is already closed: the record is late (counted, dropped) and
    /// nothing changes.
    Late(Window),
}

/// Decides what a record at `timestamp_ms` does to `sessions` (the key's existing, disjoint
/// sessions in any order), with `gap_ms` and the watermark already advanced by the record.
#[must_use]
pub fn session_decision(
    sessions: &[Window],
    timestamp_ms: i64,
    gap_ms: i64,
    watermark: &Watermark,
) -> SessionDecision {
    let low = timestamp_ms.saturating_sub(gap_ms);
    let high = timestamp_ms.saturating_add(gap_ms);
    let mut touching: Vec<Window> = sessions
        .iter()
        .copied()
        .filter(|s| s.end_ms >= low && s.start_ms <= high)
        .collect();
    touching.sort();
    touching.dedup();
    let to = touching
        .iter()
        .fold(Window::new(timestamp_ms, timestamp_ms), |acc, s| {
            Window::new(acc.start_ms.min(s.start_ms), acc.end_ms.max(s.end_ms))
        });
    // A session's end is inclusive: closed when `end < watermark`.
    if watermark.value_ms().is_some_and(|mark| to.end_ms < mark) {
        return SessionDecision::Late(to);
    }
    match touching.as_slice() {
        [] => SessionDecision::New(to),
        [one] => SessionDecision::Extend { from: *one, to },
        _ => SessionDecision::Merge { from: touching, to },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: WindowKind, grace_ms: i64) -> WindowSpec {
        WindowSpec {
            kind,
            grace_ms,
            retention_ms: 0,
        }
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_and_floor_negative_timestamps() {
        let s = spec(WindowKind::Tumbling { size_ms: 10 }, 0);
        assert_eq!(s.windows_for(0), vec![Window::new(0, 10)]);
        assert_eq!(s.windows_for(9), vec![Window::new(0, 10)]);
        assert_eq!(s.windows_for(10), vec![Window::new(10, 20)]);
        assert_eq!(s.windows_for(-1), vec![Window::new(-10, 0)]);
    }

    #[test]
    fn hopping_windows_hold_the_timestamp_in_start_order() {
        let s = spec(
            WindowKind::Hopping {
                size_ms: 10,
                advance_ms: 3,
            },
            0,
        );
        assert_eq!(
            s.windows_for(10),
            vec![Window::new(3, 13), Window::new(6, 16), Window::new(9, 19)]
        );
        for t in -50..50 {
            for w in s.windows_for(t) {
                assert!(w.start_ms <= t && t < w.end_ms);
                assert_eq!(w.start_ms.rem_euclid(3), 0);
            }
            let count = (-100..100).filter(|k| k * 3 <= t && t < k * 3 + 10).count();
            assert_eq!(s.windows_for(t).len(), count, "t = {t}");
        }
    }

    #[test]
    fn extreme_timestamps_saturate_without_panicking() {
        let s = spec(
            WindowKind::Hopping {
                size_ms: 1000,
                advance_ms: 7,
            },
            i64::MAX,
        );
        for t in [i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1, 0] {
            let windows = s.windows_for(t);
            assert!(!windows.is_empty(), "t = {t}");
            for w in &windows {
                assert!(w.start_ms <= t && (t < w.end_ms || w.end_ms == i64::MAX));
            }
        }
        let mut mark = Watermark::new(i64::MAX);
        mark.observe(i64::MIN);
        assert_eq!(mark.value_ms(), Some(i64::MIN));
        let retained = WindowSpec {
            retention_ms: i64::MAX,
            ..s
        };
        assert!(!retained.is_expired(Window::new(0, i64::MAX), &mark));
        assert!(check_future_timestamp(i64::MAX, i64::MAX, i64::MAX).is_ok());
    }

    // Goal: the window.* deploy settings pick the kind from what is given (or window.kind),
    // fill in grace and retention defaults, and name the setting they refuse.
    #[test]
    fn window_settings_resolve_or_name_the_refused_setting() {
        let tumbling = WindowSettings {
            size_ms: Some(60_000),
            ..WindowSettings::default()
        }
        .resolve(WINDOWS_PER_RECORD_MAX_DEFAULT)
        .unwrap();
        assert_eq!(
            tumbling,
            WindowDeploy {
                spec: WindowSpec {
                    kind: WindowKind::Tumbling { size_ms: 60_000 },
                    grace_ms: WINDOW_GRACE_MS_DEFAULT,
                    retention_ms: WINDOW_RETENTION_MS_DEFAULT,
                },
                emit: Emit::Changes,
            }
        );
        assert_eq!(
            tumbling.settings().resolve(WINDOWS_PER_RECORD_MAX_DEFAULT),
            Ok(tumbling)
        );
        let hopping = WindowSettings {
            size_ms: Some(10),
            advance_ms: Some(5),
            grace_ms: Some(3),
            retention_ms: Some(7),
            emit: Some("suppress".into()),
            ..WindowSettings::default()
        }
        .resolve(WINDOWS_PER_RECORD_MAX_DEFAULT)
        .unwrap();
        assert_eq!(
            hopping.spec.kind,
            WindowKind::Hopping {
                size_ms: 10,
                advance_ms: 5
            }
        );
        assert_eq!((hopping.spec.grace_ms, hopping.spec.retention_ms), (3, 7));
        assert_eq!(hopping.emit, Emit::Suppress);
        let session = WindowSettings {
            gap_ms: Some(5),
            ..WindowSettings::default()
        }
        .resolve(1)
        .unwrap();
        assert_eq!(session.spec.kind, WindowKind::Session { gap_ms: 5 });
        let refused = |settings: WindowSettings, setting: &str| {
            let error = settings.resolve(4).unwrap_err().to_string();
            assert!(error.contains(setting), "{error} should name {setting}");
        };
        refused(WindowSettings::default(), "window.size_ms");
        refused(
            WindowSettings {
                kind: Some("sliding".into()),
                ..WindowSettings::default()
            },
            "window.kind",
        );
        refused(
            WindowSettings {
                size_ms: Some(10),
                emit: Some("final".into()),
                ..WindowSettings::default()
            },
            "window.emit",
        );
        refused(
            WindowSettings {
                kind: Some("session".into()),
                size_ms: Some(10),
                gap_ms: Some(1),
                ..WindowSettings::default()
            },
            "window.size_ms",
        );
        refused(
            WindowSettings {
                kind: Some("hopping".into()),
                size_ms: Some(10),
                ..WindowSettings::default()
            },
            "window.advance_ms",
        );
        refused(
            WindowSettings {
                size_ms: Some(10),
                advance_ms: Some(1),
                ..WindowSettings::default()
            },
            "transforms.windows_per_record_max",
        );
        refused(
            WindowSettings {
                size_ms: Some(10),
                grace_ms: Some(-1),
                ..WindowSettings::default()
            },
            "window.grace_ms",
        );
        refused(
            WindowSettings {
                gap_ms: Some(10),
                retention_ms: Some(-1),
                ..WindowSettings::default()
            },
            "window.retention_ms",
        );
    }

    #[test]
    fn every_refused_setting_is_named() {
        let cases = [
            (WindowKind::Tumbling { size_ms: 0 }, 0, 0, "window.size_ms"),
            (
                WindowKind::Hopping {
                    size_ms: -5,
                    advance_ms: 1,
                },
                0,
                0,
                "window.size_ms",
            ),
            (
                WindowKind::Hopping {
                    size_ms: 5,
                    advance_ms: 0,
                },
                0,
                0,
                "window.advance_ms",
            ),
            (WindowKind::Session { gap_ms: 0 }, 0, 0, "window.gap_ms"),
            (
                WindowKind::Tumbling { size_ms: 1 },
                -1,
                0,
                "window.grace_ms",
            ),
            (
                WindowKind::Tumbling { size_ms: 1 },
                0,
                -1,
                "window.retention_ms",
            ),
        ];
        for (kind, grace_ms, retention_ms, setting) in cases {
            let error = WindowSpec {
                kind,
                grace_ms,
                retention_ms,
            }
            .validate(WINDOWS_PER_RECORD_MAX_DEFAULT)
            .unwrap_err();
            assert!(error.to_string().contains(setting), "{error}");
        }
        let advance = spec(
            WindowKind::Hopping {
                size_ms: 5,
                advance_ms: 6,
            },
            0,
        )
        .validate(WINDOWS_PER_RECORD_MAX_DEFAULT)
        .unwrap_err();
        assert_eq!(
            advance,
            WindowSpecError::AdvanceExceedsSize {
                advance_ms: 6,
                size_ms: 5
            }
        );
        let many = spec(
            WindowKind::Hopping {
                size_ms: 86_400_000,
                advance_ms: 1,
            },
            0,
        )
        .validate(WINDOWS_PER_RECORD_MAX_DEFAULT)
        .unwrap_err();
        assert!(matches!(
            many,
            WindowSpecError::TooManyWindowsPerRecord {
                windows: 86_400_000,
                limit: WINDOWS_PER_RECORD_MAX_DEFAULT
            }
        ));
        assert!(
            many.to_string()
                .contains("transforms.windows_per_record_max")
        );
        assert!(
            spec(
                WindowKind::Hopping {
                    size_ms: 10,
                    advance_ms: 10
                },
                5
            )
            .validate(10)
            .is_ok()
        );
    }

    #[test]
    fn the_watermark_trails_the_largest_timestamp_by_grace_and_never_falls() {
        let mut mark = Watermark::new(5);
        assert_eq!(mark.value_ms(), None);
        assert!(!mark.is_closed(Window::new(i64::MIN, i64::MIN)));
        assert!(mark.observe(100));
        assert_eq!(mark.value_ms(), Some(95));
        assert!(!mark.observe(50));
        assert_eq!(mark.value_ms(), Some(95));
        assert!(mark.is_closed(Window::new(85, 95)));
        assert!(!mark.is_closed(Window::new(86, 96)));
        // A hot swap to a larger grace keeps windows closed that were closed.
        let swapped = Watermark::restored(Some(100), Some(95), 50);
        assert_eq!(swapped.value_ms(), Some(95));
        let smaller = Watermark::restored(Some(100), Some(95), 0);
        assert_eq!(smaller.value_ms(), Some(100));
    }

    #[test]
    fn a_record_is_late_for_closed_windows_only() {
        let s = spec(
            WindowKind::Hopping {
                size_ms: 10,
                advance_ms: 5,
            },
            2,
        );
        let mut mark = Watermark::new(2);
        let first = assign(&s, &mut mark, 20);
        assert_eq!(first.open, vec![Window::new(15, 25), Window::new(20, 30)]);
        assert!(first.late.is_empty());
        // Watermark 18: [5, 15) closed, [10, 20) open.
        let partly = assign(&s, &mut mark, 12);
        assert_eq!(partly.open, vec![Window::new(10, 20)]);
        assert_eq!(partly.late, vec![Window::new(5, 15)]);
        assert!(!partly.is_late());
        let late = assign(&s, &mut mark, 7);
        assert!(late.is_late());
        assert_eq!(late.late, vec![Window::new(0, 10), Window::new(5, 15)]);
    }

    #[test]
    fn closing_returns_each_window_once_in_end_order() {
        let windows = [
            Window::new(20, 30),
            Window::new(0, 10),
            Window::new(10, 20),
            Window::new(5, 10),
        ];
        assert!(closed_between(&windows, None, None).is_empty());
        assert_eq!(
            closed_between(&windows, None, Some(10)),
            vec![Window::new(0, 10), Window::new(5, 10)]
        );
        assert_eq!(
            closed_between(&windows, Some(10), Some(29)),
            vec![Window::new(10, 20)]
        );
        assert_eq!(
            closed_between(&windows, Some(20), Some(i64::MAX)),
            vec![Window::new(20, 30)]
        );
    }

    #[test]
    fn state_expires_retention_after_the_window_end() {
        let s = WindowSpec {
            kind: WindowKind::Tumbling { size_ms: 10 },
            grace_ms: 0,
            retention_ms: 100,
        };
        let mut mark = Watermark::new(0);
        assert!(!s.is_expired(Window::new(0, 10), &mark));
        mark.observe(109);
        assert!(!s.is_expired(Window::new(0, 10), &mark));
        assert_eq!(s.expired_end_max(&mark), Some(9));
        mark.observe(110);
        assert!(s.is_expired(Window::new(0, 10), &mark));
        assert_eq!(s.expired_end_max(&mark), Some(10));
    }

    #[test]
    fn sessions_close_a_millisecond_after_their_last_record() {
        let session = WindowSpec {
            kind: WindowKind::Session { gap_ms: 10 },
            grace_ms: 0,
            retention_ms: 5,
        };
        let tumbling = WindowSpec {
            kind: WindowKind::Tumbling { size_ms: 10 },
            ..session
        };
        let before = Watermark::new(0);
        let mut mark = Watermark::new(0);
        assert_eq!(session.closed_end_max(&mark), None);
        assert!(!session.is_closed(Window::new(i64::MIN, i64::MIN), &mark));
        mark.observe(100);
        assert!(!session.is_closed(Window::new(90, 100), &mark));
        assert!(session.is_closed(Window::new(90, 99), &mark));
        assert!(tumbling.is_closed(Window::new(90, 100), &mark));
        assert_eq!(session.expired_end_max(&mark), Some(94));
        assert!(session.is_expired(Window::new(80, 94), &mark));
        assert!(!session.is_expired(Window::new(80, 95), &mark));
        assert_eq!(tumbling.expired_end_max(&mark), Some(95));
        let windows = [Window::new(90, 100), Window::new(80, 99)];
        assert_eq!(
            session.closed_between(&windows, &before, &mark),
            vec![Window::new(80, 99)]
        );
        assert_eq!(
            tumbling.closed_between(&windows, &before, &mark),
            vec![Window::new(80, 99), Window::new(90, 100)]
        );
    }

    #[test]
    fn future_timestamps_beyond_the_limit_are_refused() {
        assert!(check_future_timestamp(1_000, 0, 1_000).is_ok());
        let error = check_future_timestamp(1_001, 0, 1_000).unwrap_err();
        assert_eq!(
            error,
            FutureTimestamp {
                timestamp_ms: 1_001,
                now_ms: 0,
                limit_ms: 1_000
            }
        );
        assert!(
            error
                .to_string()
                .contains("transforms.future_timestamp_ms_max")
        );
    }

    #[test]
    fn sessions_start_extend_merge_or_are_late() {
        let mut mark = Watermark::new(0);
        mark.observe(100);
        assert_eq!(
            session_decision(&[], 100, 10, &mark),
            SessionDecision::New(Window::new(100, 100))
        );
        let sessions = [Window::new(100, 120), Window::new(140, 150)];
        mark.observe(120);
        // Inside a session whose last record is at the watermark: still open.
        assert_eq!(
            session_decision(&sessions, 110, 10, &mark),
            SessionDecision::Extend {
                from: Window::new(100, 120),
                to: Window::new(100, 120)
            }
        );
        mark.observe(125);
        assert_eq!(
            session_decision(&sessions, 125, 10, &mark),
            SessionDecision::Extend {
                from: Window::new(100, 120),
                to: Window::new(100, 125)
            }
        );
        assert_eq!(
            session_decision(&sessions, 130, 10, &mark),
            SessionDecision::Merge {
                from: vec![Window::new(100, 120), Window::new(140, 150)],
                to: Window::new(100, 150)
            }
        );
        // Exactly `gap` apart still joins (Kafka's inclusive bounds).
        assert!(matches!(
            session_decision(&sessions, 160, 10, &mark),
            SessionDecision::Extend { .. }
        ));
        assert_eq!(
            session_decision(&sessions, 161, 10, &mark),
            SessionDecision::New(Window::new(161, 161))
        );
        let mut later = Watermark::new(0);
        later.observe(200);
        assert_eq!(
            session_decision(&sessions, 125, 10, &later),
            SessionDecision::Late(Window::new(100, 125))
        );
        assert_eq!(
            session_decision(&[], i64::MAX, i64::MAX, &later),
            SessionDecision::New(Window::new(i64::MAX, i64::MAX))
        );
    }
}
