//! `ebb-sync` end to end: a project on disk, its warehouse, a real destination (the webhook
//! receiver emulator), runs one after another as `ebb run` would do them.

mod metric_source;
