//! A YAML document as a tree of nodes that remember where they came from.
//!
//! Parsing goes through `saphyr-parser`'s event stream; every node keeps the line and column
//! of its first character, so any later complaint about it can point at the exact spot.

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn new(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of a YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique within one loaded document; lets the deserializer name a node to prune.
    pub id: u32,
    pub pos: Pos,
    pub value: Value,
}

/// Scalars keep their text: their type is decided by what the reader asks for (a field typed
/// `String` takes `1.10` as the text "1.10", a field typed `f64` parses it). Plain scalars
/// follow the YAML 1.2 core schema when the reader has no expectation (`deserialize_any`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// `true` for `~`, `null`, `Null`, `NULL` and an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null_text(text))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name for the kind of node, for messages: "a mapping", "a list", "a string".
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar { .. } if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
        }
    }

    /// Removes the node with `id` from this tree. Returns whether it was found.
    pub fn remove(&mut self, id: u32) -> bool {
        match &mut self.value {
            Value::Scalar { .. } => false,
            Value::Seq(items) => {
                if let Some(i) = items.iter().position(|n| n.id == id) {
                    items.remove(i);
                    return true;
                }
                items.iter_mut().any(|n| n.remove(id))
            }
            Value::Map(entries) => {
                if let Some(i) = entries.iter().position(|(k, v)| k.id == id || v.id == id) {
                    entries.remove(i);
                    return true;
                }
                entries.iter_mut().any(|(_, v)| v.remove(id))
            }
        }
    }

    /// The id of the container (mapping or list) that holds node `id`, and for a mapping
    /// the key of the entry it belongs to.
    pub fn parent_of(&self, id: u32) -> Option<(u32, Option<String>)> {
        match &self.value {
            Value::Scalar { .. } => None,
            Value::Seq(items) => {
                if items.iter().any(|n| n.id == id) {
                    return Some((self.id, None));
                }
                items.iter().find_map(|n| n.parent_of(id))
            }
            Value::Map(entries) => {
                if let Some((k, _)) = entries.iter().find(|(k, v)| k.id == id || v.id == id) {
                    return Some((self.id, k.as_str().map(str::to_string)));
                }
                entries.iter().find_map(|(_, v)| v.parent_of(id))
            }
        }
    }
}

pub(crate) fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax problem in a YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty file is an empty mapping. Anchors and aliases are
/// resolved by copying; several documents in one file, tags and duplicate keys are errors.
pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while let Some(event) = parser.next_event() {
        let (event, span) = match event {
            Ok(ok) => ok,
            Err(err) => {
                let m = err.marker();
                builder.errors.push(SyntaxError {
                    pos: Pos::new(m.line() as u32, m.col() as u32 + 1),
                    message: err.info().to_string(),
                });
                return Err(builder.errors);
            }
        };
        let pos = Pos::new(span.start.line() as u32, span.start.col() as u32 + 1);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    builder.errors.push(SyntaxError {
                        pos,
                        message: "a second YAML document (`---`) in one file; ebb reads one \
                                  document a file: split it into two files"
                            .into(),
                    });
                    return Err(builder.errors);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    builder.tag_error(pos, &tag);
                }
                let node = builder.node(
                    pos,
                    Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                );
                builder.push(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                if let Some(tag) = tag {
                    builder.tag_error(pos, &tag);
                }
                builder.open(pos, anchor, Value::Seq(Vec::new()));
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(tag) = tag {
                    builder.tag_error(pos, &tag);
                }
                builder.open(pos, anchor, Value::Map(Vec::new()));
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close(),
            Event::Alias(anchor) => match builder.anchors.iter().find(|(a, _)| *a == anchor) {
                Some((_, node)) => {
                    let mut copy = node.clone();
                    builder.renumber(&mut copy);
                    builder.push(copy, 0);
                }
                None => builder.errors.push(SyntaxError {
                    pos,
                    message: "alias to an unknown anchor".into(),
                }),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(builder.root.unwrap_or(Node {
        id: 0,
        pos: Pos::new(1, 1),
        value: Value::Map(Vec::new()),
    }))
}

#[derive(Default)]
struct Builder {
    next_id: u32,
    /// Open containers, with the anchor to register when each closes, and for mappings a
    /// key waiting for its value.
    stack: Vec<(Node, usize, Option<Node>)>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    errors: Vec<SyntaxError>,
}

impl Builder {
    fn node(&mut self, pos: Pos, value: Value) -> Node {
        self.next_id += 1;
        Node {
            id: self.next_id,
            pos,
            value,
        }
    }

    fn renumber(&mut self, node: &mut Node) {
        self.next_id += 1;
        node.id = self.next_id;
        match &mut node.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => items.iter_mut().for_each(|n| self.renumber(n)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                self.renumber(k);
                self.renumber(v);
            }),
        }
    }

    fn tag_error(&mut self, pos: Pos, tag: &saphyr_parser::Tag) {
        self.errors.push(SyntaxError {
            pos,
            message: format!(
                "YAML tags like `{}{}` are not supported; remove the tag",
                tag.handle, tag.suffix
            ),
        });
    }

    fn open(&mut self, pos: Pos, anchor: usize, value: Value) {
        let node = self.node(pos, value);
        self.stack.push((node, anchor, None));
    }

    fn close(&mut self) {
        if let Some((node, anchor, _)) = self.stack.pop() {
            self.push(node, anchor);
        }
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        let Some((parent, _, pending_key)) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Some(name) = key.as_str()
                        && let Some((first, _)) =
                            entries.iter().find(|(k, _)| k.as_str() == Some(name))
                    {
                        self.errors.push(SyntaxError {
                            pos: key.pos,
                            message: format!(
                                "duplicate key \"{name}\" (first at line {}); keep one",
                                first.pos.line
                            ),
                        });
                    }
                    entries.push((key, node));
                }
            },
            Value::Scalar { .. } => unreachable!("scalars are never opened"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("name: x\nlist:\n  - a\n  - b: 1\n").unwrap();
        assert_eq!(doc.get("name").unwrap().pos, Pos::new(1, 7));
        let list = doc.get("list").unwrap();
        let Value::Seq(items) = &list.value else {
            panic!("not a list")
        };
        assert_eq!(items[0].pos, Pos::new(3, 5));
        assert_eq!(items[1].get("b").unwrap().pos, Pos::new(4, 8));
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        assert_eq!(parse("").unwrap().value, Value::Map(vec![]));
        assert_eq!(
            parse("# just a comment\n").unwrap().value,
            Value::Map(vec![])
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(errs[0].pos.line >= 1, "{errs:?}");
        let errs = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(errs[0].pos, Pos::new(2, 1));
        assert!(errs[0].message.contains("duplicate key \"a\""));
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let doc = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(
            doc.get("other").unwrap().get("x").unwrap().as_str(),
            Some("1")
        );
    }

    #[test]
    fn remove_prunes_a_map_entry() {
        let mut doc = parse("a: 1\nb: {c: 2, d: 3}\n").unwrap();
        let c = doc.get("b").unwrap().get("c").unwrap().id;
        assert_eq!(
            doc.parent_of(c),
            Some((doc.get("b").unwrap().id, Some("c".into())))
        );
        assert!(doc.remove(c));
        assert!(doc.get("b").unwrap().get("c").is_none());
        assert!(doc.get("b").unwrap().get("d").is_some());
    }
}
