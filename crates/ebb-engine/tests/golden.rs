//! The same models on the Postgres warehouse and on the lake return identical results.
//! (Being written.)
