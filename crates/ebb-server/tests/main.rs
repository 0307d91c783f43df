//! Integration tests of ebb-server, one binary with modules.

mod psql;
