//! Integration tests of the sandboxes: served on an address, state kept across restarts.

mod persistence;
