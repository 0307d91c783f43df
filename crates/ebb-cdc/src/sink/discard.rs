//! A sink that keeps nothing: for benchmarks and dry runs.

use super::Sink;
use crate::changes::{Delivery, Truncation};
use crate::error::CdcError;
use crate::position::Position;

/// Accepts and drops every change; every commit is "durable".
#[derive(Debug, Default)]
pub struct DiscardSink {
    /// Changes received.
    pub rows: u64,
}

impl Sink for DiscardSink {
    fn name(&self) -> String {
        "discard".into()
    }

    async fn open(&mut self) -> Result<Option<Position>, CdcError> {
        Ok(None)
    }

    async fn write(&mut self, delivery: &Delivery) -> Result<(), CdcError> {
        self.rows += delivery.len() as u64;
        Ok(())
    }

    async fn truncate(&mut self, _truncation: &Truncation) -> Result<(), CdcError> {
        Ok(())
    }

    async fn commit(&mut self, position: &Position, _force: bool) -> Result<Position, CdcError> {
        Ok(position.clone())
    }
}
