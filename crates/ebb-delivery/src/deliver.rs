//! The delivery loop: batches sized to the destination, each request paced by the
//! account's quota, failures retried, split or dead-lettered by their retry class.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use ebb_core::change::ChangeBatch;
use ebb_destinations::{Destination, Operation, Record, RecordResult};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::dlq::{DeadLetter, DeadLetters, DlqError};
use crate::plan::{PlanError, SyncPlan, plan_records};
use crate::quota::{Flow, Priority, Quotas};
use crate::retry::{Action, RetryPolicy, classify};

/// Batches in a row that spend their retry budget (with no successful write between them)
/// before delivery stops: the destination is down, and the rest waits for the next run.
pub const UNREACHABLE_AFTER: u32 = 3;

/// Who delivers and how.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub tenant: String,
    /// The sync or CDC pipeline: DLQ letters and fair shares are kept by it.
    pub sync: String,
    pub priority: Priority,
    pub retry: RetryPolicy,
    /// A cap below the destination's own batch size.
    pub max_batch: Option<usize>,
    /// Retry the sync's dead letters first (the default).
    pub retry_dead_letters: bool,
}

impl DeliveryOptions {
    pub fn new(tenant: &str, sync: &str) -> DeliveryOptions {
        DeliveryOptions {
            tenant: tenant.to_string(),
            sync: sync.to_string(),
            priority: Priority::Bulk,
            retry: RetryPolicy::default(),
            max_batch: None,
            retry_dead_letters: true,
        }
    }
}

/// What one delivery did. `accepted_keys` are the records the destination durably holds:
/// a sync commits only those rows to its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Records to deliver: this run's and the dead letters retried.
    pub planned: usize,
    /// Records sent at least once.
    pub sent: usize,
    pub accepted: usize,
    /// Records that went to the DLQ.
    pub rejected: usize,
    /// Sends of a record after its first.
    pub retried: usize,
    /// Dead letters of earlier runs that were retried.
    pub dead_letters_retried: usize,
    pub requests: usize,
    /// Throttle answers (429) met.
    pub throttled: usize,
    /// Batches split to isolate a refused record.
    pub splits: usize,
    pub accepted_keys: Vec<String>,
    pub rejected_keys: Vec<String>,
    /// Set when the destination failed for good (bad credentials, 410 Gone).
    pub aborted: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Refused records could not be kept: nothing may be acknowledged upstream.
    #[error(transparent)]
    DeadLetters(#[from] DlqError),
}

/// Plans the change batches with `plan` and delivers them (see [`deliver`]). Updates
/// carry only their changed fields when the plan asks for it and the destination takes
/// partial updates.
pub async fn deliver_changes<D: Destination, L: DeadLetters>(
    batches: &[ChangeBatch],
    sync_plan: &SyncPlan,
    destination: &D,
    quotas: &Quotas,
    dead_letters: &L,
    options: &DeliveryOptions,
) -> Result<DeliveryReport, DeliveryError> {
    let changed_only = sync_plan.changed_fields_only && destination.capabilities().partial_updates;
    let mut records = Vec::new();
    for batch in batches {
        records.extend(plan_records(batch, sync_plan, changed_only)?);
    }
    deliver(records, destination, quotas, dead_letters, options).await
}

/// A batch on its way.
#[derive(Debug)]
struct Work {
    records: Vec<Record>,
    /// Temporary failures so far.
    attempts: u32,
    throttles: u32,
    not_before: Option<Instant>,
}

impl Work {
    fn new(records: Vec<Record>) -> Work {
        Work {
            records,
            attempts: 0,
            throttles: 0,
            not_before: None,
        }
    }
}

/// Delivers records: at-least-once transport with each record's idempotency key, exactly
/// once in effect where the destination recognises repeats.
///
/// The sync's dead letters go first (unless a newer change of the same record supersedes
/// them). Records are cut into batches of one operation and at most the destination's
/// batch size. Each request waits for the account's quota. A throttled batch waits as
/// told and is sent again; a temporary failure is retried with jittered exponential
/// backoff up to the budget; a batch refused for its content is split in halves until the
/// bad record stands alone; refused records go to the DLQ with the destination's reason.
/// A fatal error stops the delivery and dead-letters what was not delivered.
pub async fn deliver<D: Destination, L: DeadLetters>(
    records: Vec<Record>,
    destination: &D,
    quotas: &Quotas,
    dead_letters: &L,
    options: &DeliveryOptions,
) -> Result<DeliveryReport, DeliveryError> {
    let caps = destination.capabilities();
    let quota = quotas.account(&destination.account(), &caps.rate_limits);
    let flow = Flow::new(&options.tenant, &options.sync, options.priority);
    let max_batch = options
        .max_batch
        .map_or(caps.max_batch_records, |m| m.min(caps.max_batch_records))
        .max(1);
    let mut report = DeliveryReport::default();

    let mut all = Vec::new();
    let mut from_dlq = HashSet::new();
    if options.retry_dead_letters {
        let fresh: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let letters = dead_letters.pending(&options.tenant, &options.sync).await?;
        let superseded: Vec<String> = letters
            .iter()
            .filter(|l| fresh.contains(l.record.key.as_str()))
            .map(|l| l.record.key.clone())
            .collect();
        for letter in letters {
            if !fresh.contains(letter.record.key.as_str()) {
                from_dlq.insert(letter.record.key.clone());
                all.push(letter.record);
            }
        }
        if !superseded.is_empty() {
            dead_letters
                .resolve(&options.tenant, &options.sync, &superseded)
                .await?;
        }
    }
    report.dead_letters_retried = all.len();
    all.extend(records);
    report.planned = all.len();

    let mut queue: VecDeque<Work> = batches(all, max_batch).into_iter().map(Work::new).collect();
    let mut sent_once: HashSet<String> = HashSet::new();
    // Batches in a row that spent their whole retry budget with no write succeeding in
    // between: the destination is down, not one batch unlucky.
    let mut exhausted_in_a_row = 0u32;

    while let Some(mut work) = queue.pop_front() {
        if let Some(at) = work.not_before.take() {
            tokio::time::sleep_until(at).await;
        }
        let op = work.records[0].op;
        let permit = quota
            .acquire(&flow, destination.requests_per_write(op))
            .await;
        report.requests += 1;
        for r in &work.records {
            if !sent_once.insert(r.idempotency_key.clone()) {
                report.retried += 1;
            }
        }
        let written = destination.write(&work.records).await;
        permit.complete();
        match written {
            Ok(outcome) => {
                exhausted_in_a_row = 0;
                quota.observed(outcome.rate);
                let mut accepted = Vec::new();
                let mut letters = Vec::new();
                let mut again = Vec::new();
                let mut again_after = None;
                for (record, result) in work.records.into_iter().zip(outcome.results) {
                    match result {
                        RecordResult::Accepted => accepted.push(record),
                        RecordResult::Rejected { reason, field } => {
                            letters.push((record, reason, field));
                        }
                        RecordResult::Retryable { after, reason } => {
                            if work.attempts + 1 > options.retry.attempts {
                                letters.push((record, reason, None));
                            } else {
                                again_after = again_after.max(after);
                                again.push(record);
                            }
                        }
                    }
                }
                if !again.is_empty() {
                    let attempts = work.attempts + 1;
                    let wait = options
                        .retry
                        .backoff(attempts)
                        .max(again_after.unwrap_or_default());
                    queue.push_front(Work {
                        records: again,
                        attempts,
                        throttles: work.throttles,
                        not_before: Some(Instant::now() + wait),
                    });
                }
                settle(
                    &mut report,
                    accepted,
                    letters,
                    &from_dlq,
                    dead_letters,
                    options,
                )
                .await?;
            }
            Err(err) => match classify(&err) {
                Action::Throttled { after } => {
                    report.throttled += 1;
                    quota.throttled(after);
                    work.throttles += 1;
                    debug!(sync = %options.sync, throttles = work.throttles, "throttled");
                    if work.throttles > options.retry.throttles {
                        let reason =
                            format!("still throttled after {} tries: {err}", work.throttles);
                        let letters = work
                            .records
                            .into_iter()
                            .map(|r| (r, reason.clone(), None))
                            .collect();
                        settle(
                            &mut report,
                            Vec::new(),
                            letters,
                            &from_dlq,
                            dead_letters,
                            options,
                        )
                        .await?;
                    } else {
                        queue.push_front(work);
                    }
                }
                Action::Retry { after, reason } => {
                    work.attempts += 1;
                    if work.attempts > options.retry.attempts {
                        warn!(sync = %options.sync, error = %reason, "retry budget spent");
                        let reason = format!("gave up after {} tries: {reason}", work.attempts);
                        let letters = work
                            .records
                            .into_iter()
                            .map(|r| (r, reason.clone(), None))
                            .collect();
                        settle(
                            &mut report,
                            Vec::new(),
                            letters,
                            &from_dlq,
                            dead_letters,
                            options,
                        )
                        .await?;
                        exhausted_in_a_row += 1;
                        if exhausted_in_a_row >= UNREACHABLE_AFTER && !queue.is_empty() {
                            // Stop instead of spending a budget on every batch left. What was
                            // not sent is neither accepted nor dead-lettered: a sync keeps it
                            // in its snapshot's old state and sends it on the next run.
                            let left: usize = queue.drain(..).map(|w| w.records.len()).sum();
                            let why = format!(
                                "the destination is unreachable ({exhausted_in_a_row} batches in a row {reason}); {left} records were not sent and go out on the next run"
                            );
                            warn!(sync = %options.sync, "{why}");
                            report.aborted = Some(why);
                        }
                    } else {
                        let wait = options
                            .retry
                            .backoff(work.attempts)
                            .max(after.unwrap_or_default());
                        work.not_before = Some(Instant::now() + wait);
                        queue.push_front(work);
                    }
                }
                Action::Split { reason, field } => {
                    if work.records.len() > 1 {
                        report.splits += 1;
                        let second = work.records.split_off(work.records.len() / 2);
                        let first = std::mem::take(&mut work.records);
                        for half in [second, first] {
                            queue.push_front(Work {
                                records: half,
                                attempts: work.attempts,
                                throttles: work.throttles,
                                not_before: None,
                            });
                        }
                    } else {
                        let letters = work
                            .records
                            .into_iter()
                            .map(|r| (r, reason.clone(), field.clone()))
                            .collect();
                        settle(
                            &mut report,
                            Vec::new(),
                            letters,
                            &from_dlq,
                            dead_letters,
                            options,
                        )
                        .await?;
                    }
                }
                Action::Abort { reason } => {
                    warn!(sync = %options.sync, error = %reason, "destination failed for good");
                    let rest = std::iter::once(work)
                        .chain(queue.drain(..))
                        .flat_map(|w| w.records)
                        .map(|r| (r, reason.clone(), None))
                        .collect();
                    settle(
                        &mut report,
                        Vec::new(),
                        rest,
                        &from_dlq,
                        dead_letters,
                        options,
                    )
                    .await?;
                    report.aborted = Some(reason);
                }
            },
        }
    }
    report.sent = sent_once.len();
    Ok(report)
}

/// Counts accepted records, resolves their dead letters, and dead-letters the refused.
async fn settle<L: DeadLetters>(
    report: &mut DeliveryReport,
    accepted: Vec<Record>,
    refused: Vec<(Record, String, Option<String>)>,
    from_dlq: &HashSet<String>,
    dead_letters: &L,
    options: &DeliveryOptions,
) -> Result<(), DlqError> {
    let resolved: Vec<String> = accepted
        .iter()
        .filter(|r| from_dlq.contains(&r.key))
        .map(|r| r.key.clone())
        .collect();
    if !resolved.is_empty() {
        dead_letters
            .resolve(&options.tenant, &options.sync, &resolved)
            .await?;
    }
    report.accepted += accepted.len();
    report
        .accepted_keys
        .extend(accepted.into_iter().map(|r| r.key));
    if refused.is_empty() {
        return Ok(());
    }
    report.rejected += refused.len();
    let letters: Vec<DeadLetter> = refused
        .into_iter()
        .map(|(record, reason, field)| {
            report.rejected_keys.push(record.key.clone());
            DeadLetter::new(&options.tenant, &options.sync, record, reason, field)
        })
        .collect();
    dead_letters.put(letters).await
}

/// Cuts records into batches of one operation, in order, of at most `max` records.
pub fn batches(records: Vec<Record>, max: usize) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = Vec::new();
    let mut current_op: Option<Operation> = None;
    for record in records {
        match out.last_mut() {
            Some(last) if current_op == Some(record.op) && last.len() < max => last.push(record),
            _ => {
                current_op = Some(record.op);
                out.push(vec![record]);
            }
        }
    }
    out
}

/// How long a delivery of `records` takes at least under `limit` requests a `per`, with
/// `batch` records a request (for progress estimates).
pub fn minimum_duration(records: usize, batch: usize, limit: u32, per: Duration) -> Duration {
    let requests = records.div_ceil(batch.max(1)) as u32;
    per.mul_f64(f64::from(requests.saturating_sub(limit)) / f64::from(limit.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Operation, key: &str) -> Record {
        Record {
            op,
            key: key.into(),
            id: key.into(),
            fields: Default::default(),
            idempotency_key: key.into(),
        }
    }

    #[test]
    fn batches_keep_order_and_one_operation() {
        let records = vec![
            rec(Operation::Upsert, "1"),
            rec(Operation::Upsert, "2"),
            rec(Operation::Upsert, "3"),
            rec(Operation::Delete, "4"),
            rec(Operation::Upsert, "5"),
        ];
        let b = batches(records, 2);
        let keys: Vec<Vec<&str>> = b
            .iter()
            .map(|b| b.iter().map(|r| r.key.as_str()).collect())
            .collect();
        assert_eq!(keys, vec![vec!["1", "2"], vec!["3"], vec!["4"], vec!["5"]]);
    }
}
