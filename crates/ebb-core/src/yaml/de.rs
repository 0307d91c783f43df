//! A serde `Deserializer` over a [`Node`] tree that reports every problem in a document,
//! each at its line and column, instead of stopping at the first.
//!
//! How it finds them all:
//! - Unknown keys never reach the derived code: `deserialize_struct` knows the struct's
//!   fields, records a [`Problem`] (with the closest known field as a suggestion) and passes
//!   only the known keys on.
//! - Any other error (a wrong type, a bad value, a missing field) is fatal to the derived
//!   code. [`from_node`] records it, prunes the offending node from a copy of the tree and
//!   tries again, until the document deserializes or nothing is left to prune. A "missing
//!   field" that only exists because its value was pruned is not reported twice.
//!
//! Enums: a scalar is a unit variant (`mode: upsert`); a one-key mapping whose key is a
//! variant is that variant (`- accepted_values: {values: [a]}`); a mapping with a `type` key
//! is the variant named by `type`, with the rest of the mapping as its fields
//! (`{type: hubspot, token: ...}`).
//!
//! Strings go through `${VAR}` / `${VAR:-default}` interpolation (`$${` is a literal `${`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, U32Deserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::tree::{Node, Pos, Value, is_null_text};
use crate::diagnostic::{Severity, closest};

/// The struct name that [`crate::Spanned`] asks for; this deserializer answers it with the
/// node's position.
pub(crate) const SPANNED: &str = "$ebb::Spanned";
pub(crate) const SPANNED_FIELDS: &[&str] = &["$ebb::line", "$ebb::column", "$ebb::value"];
/// The newtype name that [`crate::Secret`] asks for; a literal (not `${VAR}`) secret is
/// reported as a warning.
pub(crate) const SECRET: &str = "$ebb::Secret";

/// A problem found while reading a document, before it is tied to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    /// Dotted path of the field, e.g. `destinations.crm.token`, `columns[2].tests[0]`.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
    pub severity: Severity,
}

/// Where environment variables come from (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// What [`from_node`] found in a document.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The value, if it could be built despite the problems.
    pub value: Option<T>,
    /// Every problem, sorted by position.
    pub problems: Vec<Problem>,
    /// Lines that hold a secret written in plain text: never show them.
    pub secret_lines: Vec<u32>,
}

/// Deserializes `T` from a document, returning the value (if it could be built) and every
/// problem found.
pub fn from_node<T: DeserializeOwned>(root: &Node, env: &dyn Env) -> Parsed<T> {
    let mut tree = root.clone();
    let mut problems: Vec<Problem> = Vec::new();
    // (mapping, key) pairs whose absence is already explained: pruned after an error, or
    // suggested as the fix for a misspelled key.
    let mut explained: HashSet<(u32, String)> = HashSet::new();
    let push = |problems: &mut Vec<Problem>, p: Problem| {
        if !problems
            .iter()
            .any(|q| q.pos == p.pos && q.message == p.message)
        {
            problems.push(p);
        }
    };
    let mut value = None;
    let mut secret_lines = Vec::new();
    // Every round prunes at least one node, so this ends; the bound is a safety net.
    for _ in 0..1024 {
        let ctx = Ctx {
            env,
            problems: RefCell::new(Vec::new()),
            suggested: RefCell::new(Vec::new()),
            secret_lines: RefCell::new(Vec::new()),
        };
        let result = T::deserialize(De::new(&tree, String::new(), &ctx));
        secret_lines.extend(ctx.secret_lines.into_inner());
        for p in ctx.problems.into_inner() {
            push(&mut problems, p);
        }
        explained.extend(ctx.suggested.into_inner());
        match result {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(err) => {
                let node = err.node.unwrap_or(tree.id);
                let already_explained = match &err.kind {
                    ErrorKind::MissingField(field) => explained.contains(&(node, field.clone())),
                    _ => false,
                };
                if !already_explained {
                    push(&mut problems, err.into_problem(tree.pos));
                }
                if node == tree.id {
                    break;
                }
                if let Some((parent, Some(key))) = tree.parent_of(node) {
                    explained.insert((parent, key));
                }
                if !tree.remove(node) {
                    break;
                }
            }
        }
    }
    problems.sort_by_key(|p| p.pos);
    secret_lines.sort_unstable();
    secret_lines.dedup();
    Parsed {
        value,
        problems,
        secret_lines,
    }
}

struct Ctx<'a> {
    env: &'a dyn Env,
    problems: RefCell<Vec<Problem>>,
    /// (mapping id, field) for each "did you mean" given for a misspelled key.
    suggested: RefCell<Vec<(u32, String)>>,
    /// Lines of secrets written in plain text.
    secret_lines: RefCell<Vec<u32>>,
}

/// The error type of this deserializer. Carries where it happened once known.
#[derive(Debug, Clone)]
pub(crate) struct Error(Box<ErrorInner>);

#[derive(Debug, Clone)]
pub(crate) struct ErrorInner {
    message: String,
    help: Option<String>,
    pos: Option<Pos>,
    path: Option<String>,
    node: Option<u32>,
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
enum ErrorKind {
    Other,
    MissingField(String),
    UnknownField(String),
}

impl std::ops::Deref for Error {
    type Target = ErrorInner;
    fn deref(&self) -> &ErrorInner {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut ErrorInner {
        &mut self.0
    }
}

impl Error {
    fn new(message: String) -> Error {
        Error(Box::new(ErrorInner {
            message,
            help: None,
            pos: None,
            path: None,
            node: None,
            kind: ErrorKind::Other,
        }))
    }

    fn into_problem(self, fallback: Pos) -> Problem {
        let inner = *self.0;
        inner.into_problem(fallback)
    }
}

impl ErrorInner {
    fn into_problem(self, fallback: Pos) -> Problem {
        Problem {
            pos: self.pos.unwrap_or(fallback),
            path: self.path.unwrap_or_default(),
            message: self.message,
            help: self.help,
            severity: Severity::Error,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = self.pos {
            write!(f, "{pos}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!("expected {exp}, found {}", describe(unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(format!("invalid value {}: expected {exp}", describe(unexp)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut err = Error::new(format!("unknown value \"{variant}\""));
        err.help = Some(suggest(variant, expected));
        err
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut err = Error::new(format!("unknown field \"{field}\""));
        err.help = Some(suggest(field, expected));
        err.kind = ErrorKind::UnknownField(field.to_string());
        err
    }

    fn missing_field(field: &'static str) -> Self {
        let mut err = Error::new(format!("missing field \"{field}\""));
        err.help = Some(format!("add `{field}: ...` here"));
        err.kind = ErrorKind::MissingField(field.to_string());
        err
    }
}

fn describe(unexp: de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Unit => "nothing (null)".into(),
        de::Unexpected::Str(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// "did you mean ...?" when one of `expected` is close, else the list of what is allowed.
pub(crate) fn suggest(got: &str, expected: &[&str]) -> String {
    match closest(got, expected.iter().copied()) {
        Some(best) => format!("did you mean \"{best}\"?"),
        None if expected.is_empty() => "nothing is allowed here".into(),
        None => format!(
            "expected one of: {}",
            expected
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}`; `$${` stands for a literal `${`.
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with("$${") {
            out.push_str("${");
            rest = &rest[3..];
            continue;
        }
        if !rest.starts_with("${") {
            out.push('$');
            rest = &rest[1..];
            continue;
        }
        let Some(end) = rest.find('}') else {
            return Err("`${` without a closing `}`; write `$${` for a literal `${`".into());
        };
        let inner = &rest[2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "`${{{inner}}}` is not a valid variable reference; use `${{NAME}}` or `${{NAME:-default}}`"
            ));
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set; export it, or give a default: `${{{name}:-value}}`"
                ));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

struct De<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx<'a>,
    /// Set when this mapping is the body of a `type:`-tagged enum variant.
    skip_type_key: bool,
}

impl<'a> De<'a> {
    fn new(node: &'a Node, path: String, ctx: &'a Ctx<'a>) -> De<'a> {
        De {
            node,
            path,
            ctx,
            skip_type_key: false,
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Ties an error to this node (or, for an unknown field, to that key) unless a deeper
    /// node already claimed it.
    fn locate(&self, mut err: Error) -> Error {
        if err.pos.is_some() {
            return err;
        }
        if let (ErrorKind::UnknownField(field), Value::Map(entries)) =
            (err.kind.clone(), &self.node.value)
            && let Some((key, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(&field))
        {
            err.pos = Some(key.pos);
            err.path = Some(self.child_path(&field));
            err.node = Some(key.id);
            return err;
        }
        err.pos = Some(self.node.pos);
        err.path = Some(self.path.clone());
        err.node = Some(self.node.id);
        err
    }

    fn scalar_text(&self) -> Option<(&'a str, bool)> {
        match &self.node.value {
            Value::Scalar { text, plain } => Some((text.as_str(), *plain)),
            _ => None,
        }
    }

    /// The scalar's text after interpolation; null and containers are type errors.
    fn string(&self, exp: &dyn de::Expected) -> Result<String, Error> {
        match self.scalar_text() {
            Some(_) if self.node.is_null() => {
                Err(de::Error::invalid_type(de::Unexpected::Unit, exp))
            }
            Some((text, _)) => interpolate(text, self.ctx.env).map_err(Error::new),
            None => Err(self.unexpected(exp)),
        }
    }

    fn unexpected(&self, exp: &dyn de::Expected) -> Error {
        match &self.node.value {
            Value::Map(_) => de::Error::invalid_type(de::Unexpected::Map, exp),
            Value::Seq(_) => de::Error::invalid_type(de::Unexpected::Seq, exp),
            Value::Scalar { .. } if self.node.is_null() => {
                de::Error::invalid_type(de::Unexpected::Unit, exp)
            }
            Value::Scalar { text, .. } => de::Error::invalid_type(de::Unexpected::Str(text), exp),
        }
    }

    fn any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(Seq::new(items, &self)),
            Value::Map(entries) => visitor.visit_map(Map::new(entries, &self, None)),
            Value::Scalar { text, plain: true } => {
                if is_null_text(text) {
                    return visitor.visit_unit();
                }
                match text.as_str() {
                    "true" | "True" | "TRUE" => return visitor.visit_bool(true),
                    "false" | "False" | "FALSE" => return visitor.visit_bool(false),
                    _ => {}
                }
                if let Some(v) = parse_int(text) {
                    return match i64::try_from(v) {
                        Ok(i) => visitor.visit_i64(i),
                        Err(_) => match u64::try_from(v) {
                            Ok(u) => visitor.visit_u64(u),
                            Err(_) => visitor.visit_f64(v as f64),
                        },
                    };
                }
                if let Some(f) = parse_float(text) {
                    return visitor.visit_f64(f);
                }
                visitor.visit_string(interpolate(text, self.ctx.env).map_err(Error::new)?)
            }
            Value::Scalar { text, plain: false } => {
                visitor.visit_string(interpolate(text, self.ctx.env).map_err(Error::new)?)
            }
        }
    }

    fn integer<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.string(&visitor)?;
        match parse_int(&text) {
            Some(v) => match i64::try_from(v) {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => match u64::try_from(v) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => Err(Error::new(format!("{text} is out of range"))),
                },
            },
            None => Err(de::Error::invalid_type(
                de::Unexpected::Str(&text),
                &visitor,
            )),
        }
    }

    fn float<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.string(&visitor)?;
        match parse_float(&text).or_else(|| parse_int(&text).map(|i| i as f64)) {
            Some(f) => visitor.visit_f64(f),
            None => Err(de::Error::invalid_type(
                de::Unexpected::Str(&text),
                &visitor,
            )),
        }
    }

    fn strukt<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED {
            return visitor.visit_map(SpannedAccess { de: self, field: 0 });
        }
        match &self.node.value {
            Value::Map(entries) => {
                let skip = self.skip_type_key.then_some("type");
                for (key, _) in entries {
                    let Some(k) = key.as_str() else {
                        self.report(key, "mapping keys must be plain names".into(), None);
                        continue;
                    };
                    if Some(k) != skip && !fields.contains(&k) {
                        if let Some(best) = closest(k, fields.iter().copied()) {
                            self.ctx
                                .suggested
                                .borrow_mut()
                                .push((self.node.id, best.to_string()));
                        }
                        self.report(
                            key,
                            format!("unknown field \"{k}\""),
                            Some(suggest(k, fields)),
                        );
                    }
                }
                visitor.visit_map(Map::new(entries, &self, Some((fields, skip))))
            }
            // `key:` with nothing after it is an empty mapping.
            Value::Scalar { .. } if self.node.is_null() => {
                visitor.visit_map(Map::new(&[], &self, Some((fields, None))))
            }
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn report(&self, key: &Node, message: String, help: Option<String>) {
        let path = self.child_path(key.as_str().unwrap_or("?"));
        self.ctx.problems.borrow_mut().push(Problem {
            pos: key.pos,
            path,
            message,
            help,
            severity: Severity::Error,
        });
    }
}

fn parse_int(text: &str) -> Option<i128> {
    let t = text.replace('_', "");
    if let Some(hex) = t.strip_prefix("0x") {
        return i128::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return i128::from_str_radix(oct, 8).ok();
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(&t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        text.parse().ok()
    } else {
        None
    }
}

macro_rules! located {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(fn $name<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            let node = self.node;
            let path = self.path.clone();
            let ctx = self.ctx;
            self.$body(visitor).map_err(|e| De::new(node, path, ctx).locate(e))
        })*
    };
}

impl<'a> De<'a> {
    fn boolean<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.string(&visitor)?;
        match text.as_str() {
            "true" | "True" | "TRUE" => visitor.visit_bool(true),
            "false" | "False" | "FALSE" => visitor.visit_bool(false),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Str(&text),
                &"true or false",
            )),
        }
    }

    fn str_value<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.string(&visitor)?;
        visitor.visit_string(text)
    }

    fn option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.unexpected(&visitor))
        }
    }

    fn seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(Seq::new(items, &self)),
            Value::Scalar { .. } if self.node.is_null() => visitor.visit_seq(Seq::new(&[], &self)),
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(Map::new(entries, &self, None)),
            Value::Scalar { .. } if self.node.is_null() => {
                visitor.visit_map(Map::new(&[], &self, None))
            }
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn ignored<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl<'a> de::Deserializer<'a> for De<'a> {
    type Error = Error;

    located! {
        deserialize_any => any,
        deserialize_bool => boolean,
        deserialize_i8 => integer, deserialize_i16 => integer, deserialize_i32 => integer,
        deserialize_i64 => integer, deserialize_i128 => integer,
        deserialize_u8 => integer, deserialize_u16 => integer, deserialize_u32 => integer,
        deserialize_u64 => integer, deserialize_u128 => integer,
        deserialize_f32 => float, deserialize_f64 => float,
        deserialize_char => str_value, deserialize_str => str_value,
        deserialize_string => str_value, deserialize_bytes => str_value,
        deserialize_byte_buf => str_value, deserialize_identifier => str_value,
        deserialize_option => option, deserialize_unit => unit,
        deserialize_seq => seq, deserialize_map => map,
        deserialize_ignored_any => ignored,
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SECRET
            && let Some((text, _)) = self.scalar_text()
            && !self.node.is_null()
            && !text.contains("${")
        {
            self.ctx.secret_lines.borrow_mut().push(self.node.pos.line);
            self.ctx.problems.borrow_mut().push(Problem {
                pos: self.node.pos,
                path: self.path.clone(),
                message: "a secret is written here in plain text".into(),
                help: Some(
                    "put it in an environment variable and write `${VAR_NAME}` instead".into(),
                ),
                severity: Severity::Warning,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self.node;
        let path = self.path.clone();
        let ctx = self.ctx;
        self.strukt(name, fields, visitor)
            .map_err(|e| De::new(node, path, ctx).locate(e))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self.node;
        let path = self.path.clone();
        let ctx = self.ctx;
        let result = match &self.node.value {
            Value::Scalar { .. } if !self.node.is_null() => {
                let text = self.string(&visitor)?;
                visitor.visit_enum(text.into_deserializer())
            }
            Value::Map(entries)
                if entries.len() == 1
                    && entries[0].0.as_str().is_some_and(|k| variants.contains(&k)) =>
            {
                let (key, value) = &entries[0];
                visitor.visit_enum(Variant {
                    tag: key,
                    body: De::new(value, self.child_path(key.as_str().unwrap_or("")), ctx),
                })
            }
            Value::Map(_) if self.node.get("type").is_some() => {
                let tag = self.node.get("type").expect("checked above");
                visitor.visit_enum(Variant {
                    tag,
                    body: De {
                        node: self.node,
                        path: self.path.clone(),
                        ctx,
                        skip_type_key: true,
                    },
                })
            }
            Value::Map(_) => {
                let mut err = Error::new("missing field \"type\"".into());
                err.kind = ErrorKind::MissingField("type".into());
                err.help = Some(format!(
                    "add `type:` with one of: {}",
                    variants
                        .iter()
                        .map(|v| format!("\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                Err(err)
            }
            _ => Err(self.unexpected(&visitor)),
        };
        result.map_err(|e| De::new(node, path, ctx).locate(e))
    }
}

struct Seq<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    parent: &'p De<'a>,
}

impl<'a, 'p> Seq<'a, 'p> {
    fn new(items: &'a [Node], parent: &'p De<'a>) -> Self {
        Seq {
            items: items.iter(),
            index: 0,
            parent,
        }
    }
}

impl<'a> SeqAccess<'a> for Seq<'a, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.parent.path, self.index);
        self.index += 1;
        let ctx = self.parent.ctx;
        seed.deserialize(De::new(item, path.clone(), ctx))
            .map(Some)
            .map_err(|e| De::new(item, path, ctx).locate(e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    /// For structs: only these keys are passed on (the others were reported).
    known: Option<(&'static [&'static str], Option<&'static str>)>,
    value: Option<(&'a Node, String)>,
    parent: &'p De<'a>,
}

impl<'a, 'p> Map<'a, 'p> {
    fn new(
        entries: &'a [(Node, Node)],
        parent: &'p De<'a>,
        known: Option<(&'static [&'static str], Option<&'static str>)>,
    ) -> Self {
        Map {
            entries: entries.iter(),
            known,
            value: None,
            parent,
        }
    }
}

impl<'a> MapAccess<'a> for Map<'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.entries.by_ref() {
            if let Some((fields, skip)) = self.known {
                match key.as_str() {
                    Some(k) if fields.contains(&k) && Some(k) != skip => {}
                    _ => continue,
                }
            }
            let path = self.parent.child_path(key.as_str().unwrap_or("?"));
            self.value = Some((value, path.clone()));
            return seed
                .deserialize(De::new(key, path, self.parent.ctx))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (value, path) = self
            .value
            .take()
            .ok_or_else(|| Error::new("value asked for before its key".into()))?;
        let ctx = self.parent.ctx;
        seed.deserialize(De::new(value, path.clone(), ctx))
            .map_err(|e| De::new(value, path, ctx).locate(e))
    }
}

struct Variant<'a> {
    tag: &'a Node,
    body: De<'a>,
}

impl<'a> EnumAccess<'a> for Variant<'a> {
    type Error = Error;
    type Variant = De<'a>;

    fn variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<(T::Value, De<'a>), Error> {
        let path = if self.body.skip_type_key {
            self.body.child_path("type")
        } else {
            self.body.path.clone()
        };
        let tag = seed.deserialize(De::new(self.tag, path, self.body.ctx))?;
        Ok((tag, self.body))
    }
}

impl<'a> VariantAccess<'a> for De<'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        if self.skip_type_key {
            // `{type: x}` with other keys: none are allowed for a unit variant.
            if let Value::Map(entries) = &self.node.value {
                for (key, _) in entries.iter().filter(|(k, _)| k.as_str() != Some("type")) {
                    self.report(
                        key,
                        format!("unknown field \"{}\"", key.as_str().unwrap_or("?")),
                        Some("this kind takes no other fields".into()),
                    );
                }
            }
            return Ok(());
        }
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

struct SpannedAccess<'a> {
    de: De<'a>,
    field: usize,
}

impl<'a> MapAccess<'a> for SpannedAccess<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match SPANNED_FIELDS.get(self.field) {
            Some(name) => seed
                .deserialize(BorrowedStrDeserializer::<Error>::new(name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.field += 1;
        match self.field {
            1 => seed.deserialize(U32Deserializer::<Error>::new(self.de.node.pos.line)),
            2 => seed.deserialize(U32Deserializer::<Error>::new(self.de.node.pos.column)),
            _ => {
                let (node, path, ctx) = (self.de.node, self.de.path.clone(), self.de.ctx);
                seed.deserialize(De::new(node, path.clone(), ctx))
                    .map_err(|e| De::new(node, path, ctx).locate(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::yaml::tree::parse;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Column {
        name: String,
        #[serde(default)]
        tests: Vec<Test>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "snake_case")]
    enum Test {
        NotNull,
        Unique,
        AcceptedValues { values: Vec<String> },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Model {
        description: Option<String>,
        primary_key: String,
        #[serde(default)]
        columns: Vec<Column>,
        #[serde(default)]
        limit: Option<u32>,
    }

    fn load<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<Problem>) {
        let parsed = from_node(&parse(text).unwrap(), &no_env);
        (parsed.value, parsed.problems)
    }

    #[test]
    fn reads_a_valid_document() {
        let (m, problems) = load::<Model>(
            "primary_key: id\ncolumns:\n  - name: id\n    tests: [not_null, unique]\n  - name: plan\n    tests:\n      - accepted_values: {values: [a, b]}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let m = m.unwrap();
        assert_eq!(m.columns[0].tests, vec![Test::NotNull, Test::Unique]);
        assert_eq!(
            m.columns[1].tests,
            vec![Test::AcceptedValues {
                values: vec!["a".into(), "b".into()]
            }]
        );
    }

    #[test]
    fn reports_every_problem_with_position_and_suggestion() {
        let text = "primary_ky: id\ncolumns:\n  - name: id\n    tests: [not_nul]\n  - nme: x\nlimit: lots\n";
        let (_, problems) = load::<Model>(text);
        let summary: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {}",
                    p.pos,
                    p.path,
                    p.message,
                    p.help.clone().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            summary.iter().any(|s| s.starts_with(
                "1:1 primary_ky unknown field \"primary_ky\" did you mean \"primary_key\"?"
            )),
            "{summary:#?}"
        );
        assert!(
            summary.iter().any(|s| s.starts_with(
                "4:13 columns[0].tests[0] unknown value \"not_nul\" did you mean \"not_null\"?"
            )),
            "{summary:#?}"
        );
        assert!(
            summary.iter().any(|s| s
                .starts_with("5:5 columns[1].nme unknown field \"nme\" did you mean \"name\"?")),
            "{summary:#?}"
        );
        assert!(
            summary
                .iter()
                .any(|s| s.starts_with("6:8 limit expected u32")),
            "{summary:#?}"
        );
        // A missing field explained by a misspelling is not reported again.
        assert!(
            !summary.iter().any(|s| s.contains("missing field")),
            "{summary:#?}"
        );
        assert_eq!(summary.len(), 4, "{summary:#?}");
        // A missing field with no misspelling to explain it is reported.
        let (_, problems) = load::<Model>("description: x\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "missing field \"primary_key\"");
    }

    #[test]
    fn interpolates_environment_variables() {
        let env = |name: &str| (name == "HOST").then(|| "db.internal".to_string());
        assert_eq!(
            interpolate("pg://${HOST}:5432", &env).unwrap(),
            "pg://db.internal:5432"
        );
        assert_eq!(interpolate("${PORT:-5432}", &env).unwrap(), "5432");
        assert_eq!(
            interpolate("cost $5 $${HOST}", &env).unwrap(),
            "cost $5 ${HOST}"
        );
        assert!(
            interpolate("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING is not set")
        );
        assert!(interpolate("${BAD NAME}", &env).is_err());
        assert!(interpolate("${OPEN", &env).is_err());
    }

    #[test]
    fn type_tagged_mappings_pick_the_variant() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Dest {
            Webhook { url: String },
            Parquet { path: String },
        }
        let (d, p) = load::<Dest>("type: webhook\nurl: http://x\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            d,
            Some(Dest::Webhook {
                url: "http://x".into()
            })
        );
        let (_, p) = load::<Dest>("type: webhook\nurl: http://x\npath: y\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].pos, Pos::new(3, 1));
        let (_, p) = load::<Dest>("type: webhok\nurl: http://x\n");
        assert_eq!(p[0].pos, Pos::new(1, 7));
        assert_eq!(p[0].help.as_deref(), Some("did you mean \"webhook\"?"));
    }
}
