//! When syncs run by themselves: five-field cron expressions and fixed intervals, in UTC.
//!
//! Every `ebb serve` process runs the same scheduler loop. Once a second each process works
//! out, for every scheduled sync, the latest instant at or before now at which it was due,
//! and asks the state store to fire it ([`ebb_state::StateStore::fire_schedule`]): the store records the
//! last instant fired per sync and creates the run in the same transaction, so an instant
//! fires once however many processes ask, and a sync whose run is still going gets one
//! queued run behind it, never a pile. A sync whose schedule is seen for the first time
//! waits for its next due instant (it does not fire for the past). "After" sequences are
//! queued by the worker that finishes the run they follow (see [`crate::worker`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use ebb_core::project::Sync;
use ebb_state::{NewRun, RunKind, Trigger};
use tokio::sync::watch;

use crate::api::AppState;

/// How often each process looks at the schedules.
const TICK: Duration = Duration::from_secs(1);

/// A parsed five-field cron expression: minute, hour, day of month, month, day of week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Whether the day-of-month / day-of-week field is `*`: when both are restricted a day
    /// matches if either does (as in Vixie cron).
    any_day_of_month: bool,
    any_day_of_week: bool,
}

fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("cron {name} field \"{text}\": bad step \"{s}\""))?,
            ),
            None => (part, 1),
        };
        let number = |b: &str| {
            b.parse::<u32>()
                .ok()
                .filter(|v| (lo..=hi).contains(v))
                .ok_or_else(|| {
                    format!(
                        "cron {name} field \"{text}\": \"{b}\" is not a number from {lo} to {hi}"
                    )
                })
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else {
            let v = number(range)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if part.contains('/') { hi } else { v })
        };
        if from > to {
            return Err(format!(
                "cron {name} field \"{text}\": range {from}-{to} runs backwards"
            ));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "cron \"{expr}\" has {} fields; write five: minute hour day-of-month month day-of-week",
                f.len()
            ));
        }
        let mut dow = field(f[4], "day-of-week", 0, 7)?;
        if dow & (1 << 7) != 0 {
            dow |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            minutes: field(f[0], "minute", 0, 59)?,
            hours: field(f[1], "hour", 0, 23)? as u32,
            days_of_month: field(f[2], "day-of-month", 1, 31)? as u32,
            months: field(f[3], "month", 1, 12)? as u16,
            days_of_week: (dow & 0x7f) as u8,
            any_day_of_month: f[2] == "*",
            any_day_of_week: f[4] == "*",
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.any_day_of_month, self.any_day_of_week) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The latest minute at or before `t` that the expression names (searching back up to
    /// five years, enough for any valid expression, 29 February included).
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = t.date_naive();
        let mut day = today;
        for _ in 0..(366 * 5) {
            if self.day_matches(day) {
                let (max_hour, max_minute) = if day == today {
                    (t.hour(), t.minute())
                } else {
                    (23, 59)
                };
                for hour in (0..=max_hour).rev() {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let top = if hour == max_hour { max_minute } else { 59 };
                    if let Some(minute) = (0..=top).rev().find(|m| self.minutes & (1 << m) != 0) {
                        let naive = day.and_hms_opt(hour, minute, 0)?;
                        return Some(Utc.from_utc_datetime(&naive));
                    }
                }
            }
            day = day.pred_opt()?;
        }
        None
    }
}

/// When a sync is due by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Cron(Cron),
    /// Every so long, aligned to the Unix epoch (so every process computes the same
    /// instants).
    Every(Duration),
}

impl Due {
    /// The sync's own schedule (`cron` or `every`); `None` for `after` or no schedule.
    pub fn of(sync: &Sync) -> Result<Option<Due>, String> {
        let Some(schedule) = &sync.config.schedule else {
            return Ok(None);
        };
        if let Some(cron) = &schedule.value.cron {
            return Cron::parse(&cron.value).map(|c| Some(Due::Cron(c)));
        }
        if let Some(every) = &schedule.value.every {
            return Ok(Some(Due::Every(every.0.max(Duration::from_secs(1)))));
        }
        Ok(None)
    }

    /// The latest due instant at or before `now_ms` (Unix milliseconds).
    pub fn latest(&self, now_ms: i64) -> Option<i64> {
        match self {
            Due::Every(every) => {
                let step = i64::try_from(every.as_millis()).ok()?.max(1);
                Some(now_ms - now_ms.rem_euclid(step))
            }
            Due::Cron(cron) => {
                let t = Utc.timestamp_millis_opt(now_ms).single()?;
                cron.latest_at_or_before(t).map(|d| d.timestamp_millis())
            }
        }
    }
}

/// The scheduler loop of one process; ends when `shutdown` turns true.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let scheduled: Vec<(&Sync, Due)> = state
        .project
        .syncs
        .iter()
        .filter(|s| s.config.enabled)
        .filter_map(|s| match Due::of(s) {
            Ok(Some(due)) => Some((s, due)),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(sync = %s.name, error = %err, "schedule ignored");
                None
            }
        })
        .collect();
    if scheduled.is_empty() {
        return;
    }
    tracing::info!(syncs = scheduled.len(), "scheduler started");
    loop {
        tick(&state, &scheduled).await;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn tick(state: &AppState, scheduled: &[(&Sync, Due)]) {
    let store = &state.store;
    let paused = match store.paused_syncs(None).await {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(error = %err, "scheduler: state store unavailable");
            return;
        }
    };
    let now = ebb_state::now_ms();
    for (sync, due) in scheduled {
        let tenant = crate::tenant_of(sync);
        if paused.iter().any(|(t, s)| t == tenant && *s == sync.name) {
            continue;
        }
        let Some(due_at) = due.latest(now) else {
            continue;
        };
        let new = NewRun::new(tenant, &sync.name, RunKind::Sync, Trigger::Schedule);
        match store.fire_schedule(&new, due_at).await {
            Ok(Some(created)) => {
                tracing::info!(sync = %sync.name, run = created.run.id, queued = created.created, "schedule fired");
                state.wake.notify_waiters();
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(sync = %sync.name, error = %err, "schedule not fired"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn latest(expr: &str, now: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .latest_at_or_before(at(now))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn cron_finds_the_latest_due_minute() {
        assert_eq!(
            latest("0 * * * *", "2026-11-29T10:17:30Z"),
            "2026-11-29T10:00:00+00:00"
        );
        assert_eq!(
            latest("*/15 * * * *", "2026-11-29T10:44:59Z"),
            "2026-11-29T10:30:00+00:00"
        );
        assert_eq!(
            latest("30 2 * * *", "2026-11-29T01:00:00Z"),
            "2026-11-28T02:30:00+00:00"
        );
        // Monday to Friday at 09:00: Sunday 29 November looks back to Friday the 27th.
        assert_eq!(
            latest("0 9 * * 1-5", "2026-11-29T12:00:00Z"),
            "2026-11-27T09:00:00+00:00"
        );
        // 7 is Sunday as well.
        assert_eq!(
            latest("0 9 * * 7", "2026-11-29T12:00:00Z"),
            "2026-11-29T09:00:00+00:00"
        );
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        assert_eq!(
            latest("0 0 1 * 0", "2026-11-28T12:00:00Z"),
            "2026-11-22T00:00:00+00:00"
        );
        // 29 February, from a non-leap year.
        assert_eq!(
            latest("0 0 29 2 *", "2027-03-01T00:00:00Z"),
            "2024-02-29T00:00:00+00:00"
        );
        // A minute that is due now counts.
        assert_eq!(
            latest("17 10 * * *", "2026-11-29T10:17:00Z"),
            "2026-11-29T10:17:00+00:00"
        );
    }

    #[test]
    fn bad_cron_is_refused_with_the_field() {
        assert!(Cron::parse("0 * * *").unwrap_err().contains("4 fields"));
        assert!(Cron::parse("60 * * * *").unwrap_err().contains("minute"));
        assert!(
            Cron::parse("0 5-2 * * *")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
    }

    #[test]
    fn intervals_align_to_the_epoch() {
        let due = Due::Every(Duration::from_secs(60));
        assert_eq!(due.latest(125_000), Some(120_000));
        assert_eq!(due.latest(120_000), Some(120_000));
    }
}
