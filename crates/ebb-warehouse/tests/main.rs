//! Integration tests of ebb-warehouse (being written).
