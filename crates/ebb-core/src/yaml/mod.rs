//! YAML with positions: a span-keeping tree ([`tree`]) and a serde deserializer over it
//! ([`de`]) that reports every problem in a document at its line and column.

pub mod de;
pub mod tree;

pub use de::{Env, Parsed, Problem, ProcessEnv, from_node, interpolate};
pub use tree::{Node, Pos, SyntaxError, Value, parse};
