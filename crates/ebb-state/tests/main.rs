//! The state store's contract: every test runs against SQLite (a file in a temp folder) and
//! Postgres (a fresh database on the test kit's cluster), through the same `StateStore`.
//! `contract!(a, b)` in a module makes `sqlite::a`, `postgres::a`, ... from `async fn a(f:
//! Fixture)`.

mod support;

mod dlq;
mod leases;
mod migrations;
mod outbox;
mod records;
mod runs;
mod schedules;
