//! Integration tests of ebb-warehouse, one binary with modules: the Postgres warehouse
//! against a testkit cluster, the lake on local files, and the lake on S3 (a `moto` server
//! the test starts).

mod lake;
mod postgres;
mod s3;
mod support;
