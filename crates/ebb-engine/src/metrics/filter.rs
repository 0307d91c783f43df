//! Filters (`--where`, a metric's `filter:`): parsed into a small AST, checked, re-rendered.
//!
//! A filter is never pasted into SQL as text. It is parsed with sqlparser (the parser
//! DataFusion uses), then walked: only dimension references, literals, comparisons,
//! `AND`/`OR`/`NOT`, `IN (...)`, `BETWEEN`, `IS [NOT] NULL`, `IS [NOT] TRUE/FALSE` and
//! `[NOT] LIKE/ILIKE '...'` are accepted; anything else (a function call, a subquery, a
//! cast, arithmetic, `;`) is an error that names what was found. The [`Filter`] tree is then
//! rendered with every dimension replaced by its column expression in the query being built,
//! every literal re-quoted, and every comparison in parentheses.
//!
//! MetricFlow's template syntax is accepted too: `{{ Dimension('invoice__status') }}`,
//! `{{ TimeDimension('metric_time', 'month') }}` and `{{ Entity('account') }}` are read as
//! the plain references `invoice__status`, `metric_time__month` and `account`.

use std::fmt;

use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType, Expr, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A checked filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A dimension, entity or `metric_time` reference, as written: `account__region`.
    Dim(String),
    Lit(Literal),
    Cmp(Box<Filter>, CmpOp, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    InList {
        expr: Box<Filter>,
        list: Vec<Filter>,
        negated: bool,
    },
    Between {
        expr: Box<Filter>,
        low: Box<Filter>,
        high: Box<Filter>,
        negated: bool,
    },
    IsNull {
        expr: Box<Filter>,
        negated: bool,
    },
    IsBool {
        expr: Box<Filter>,
        value: bool,
        negated: bool,
    },
    Like {
        expr: Box<Filter>,
        pattern: String,
        negated: bool,
        case_insensitive: bool,
    },
}

/// A literal value, kept in a form that renders the same in every dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Digits, an optional `-`, `.` and exponent: checked to be a number.
    Number(String),
    Str(String),
    Bool(bool),
    Null,
    /// `DATE '2025-01-31'`
    Date(String),
    /// `TIMESTAMP '2025-01-31 12:00:00'`
    Timestamp(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter \"{text}\": {message}")]
pub struct FilterError {
    pub text: String,
    pub message: String,
}

impl Filter {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let fail = |message: String| FilterError {
            text: text.to_string(),
            message,
        };
        let plain = expand_templates(text).map_err(fail)?;
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(&plain)
            .map_err(|e| fail(format!("not a valid expression ({e})")))?;
        let expr = parser
            .parse_expr()
            .map_err(|e| fail(format!("not a valid expression ({e})")))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(fail(format!(
                "unexpected `{}` after the expression; join conditions with AND / OR",
                next.token
            )));
        }
        let filter = convert(&expr).map_err(fail)?;
        if !filter.is_condition() {
            return Err(fail(
                "is not a condition; compare a dimension with a value, e.g. account__region = 'EMEA'"
                    .into(),
            ));
        }
        Ok(filter)
    }

    /// Every dimension reference, in order of appearance (with repeats).
    pub fn dims(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |f| {
            if let Filter::Dim(d) = f {
                out.push(d.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Filter)) {
        f(self);
        match self {
            Filter::Dim(_) | Filter::Lit(_) => {}
            Filter::Cmp(a, _, b) | Filter::And(a, b) | Filter::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Filter::Not(a)
            | Filter::IsNull { expr: a, .. }
            | Filter::IsBool { expr: a, .. }
            | Filter::Like { expr: a, .. } => a.walk(f),
            Filter::InList { expr, list, .. } => {
                expr.walk(f);
                for x in list {
                    x.walk(f);
                }
            }
            Filter::Between {
                expr, low, high, ..
            } => {
                expr.walk(f);
                low.walk(f);
                high.walk(f);
            }
        }
    }

    /// True for expressions that yield a boolean (as opposed to a bare value).
    fn is_condition(&self) -> bool {
        match self {
            Filter::Dim(_) => true, // a boolean dimension, e.g. `invoice__is_paid`
            Filter::Lit(Literal::Bool(_)) => true,
            Filter::Lit(_) => false,
            Filter::And(a, b) | Filter::Or(a, b) => a.is_condition() && b.is_condition(),
            Filter::Not(a) => a.is_condition(),
            _ => true,
        }
    }

    /// SQL for this filter, with each dimension replaced by what `column` returns for it.
    pub fn render<E>(
        &self,
        column: &mut dyn FnMut(&str) -> Result<String, E>,
    ) -> Result<String, E> {
        Ok(match self {
            Filter::Dim(d) => column(d)?,
            Filter::Lit(l) => l.sql(),
            Filter::Cmp(a, op, b) => {
                format!("({} {} {})", a.render(column)?, op.sql(), b.render(column)?)
            }
            Filter::And(a, b) => format!("({} AND {})", a.render(column)?, b.render(column)?),
            Filter::Or(a, b) => format!("({} OR {})", a.render(column)?, b.render(column)?),
            Filter::Not(a) => format!("(NOT {})", a.render(column)?),
            Filter::InList {
                expr,
                list,
                negated,
            } => {
                let items = list
                    .iter()
                    .map(|x| x.render(column))
                    .collect::<Result<Vec<_>, E>>()?;
                format!(
                    "({} {}IN ({}))",
                    expr.render(column)?,
                    if *negated { "NOT " } else { "" },
                    items.join(", ")
                )
            }
            Filter::Between {
                expr,
                low,
                high,
                negated,
            } => format!(
                "({} {}BETWEEN {} AND {})",
                expr.render(column)?,
                if *negated { "NOT " } else { "" },
                low.render(column)?,
                high.render(column)?
            ),
            Filter::IsNull { expr, negated } => format!(
                "({} IS {}NULL)",
                expr.render(column)?,
                if *negated { "NOT " } else { "" }
            ),
            Filter::IsBool {
                expr,
                value,
                negated,
            } => format!(
                "({} IS {}{})",
                expr.render(column)?,
                if *negated { "NOT " } else { "" },
                if *value { "TRUE" } else { "FALSE" }
            ),
            Filter::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => format!(
                "({} {}{} {})",
                expr.render(column)?,
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" },
                Literal::Str(pattern.clone()).sql()
            ),
        })
    }

    /// `a AND b`, where either may be absent.
    pub fn and(a: Option<Filter>, b: Option<Filter>) -> Option<Filter> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Filter::And(Box::new(a), Box::new(b))),
            (a, b) => a.or(b),
        }
    }
}

/// A canonical text of the filter (dimensions as written): equal filters print equal.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .render::<std::convert::Infallible>(&mut |d| Ok(d.to_string()))
            .unwrap_or_default();
        f.write_str(&text)
    }
}

impl Literal {
    /// The literal as SQL that PostgreSQL and DataFusion read alike.
    pub fn sql(&self) -> String {
        match self {
            Literal::Number(n) => n.clone(),
            Literal::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Literal::Bool(true) => "TRUE".into(),
            Literal::Bool(false) => "FALSE".into(),
            Literal::Null => "NULL".into(),
            Literal::Date(d) => format!("DATE '{d}'"),
            Literal::Timestamp(t) => format!("TIMESTAMP '{t}'"),
        }
    }
}

/// Replaces `{{ Dimension('x') }}`-style templates with plain references.
fn expand_templates(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed with `}}`".to_string())?;
        let inner = after[..end].trim();
        let (func, args) = inner
            .split_once('(')
            .and_then(|(f, a)| a.trim_end().strip_suffix(')').map(|a| (f.trim(), a)))
            .ok_or_else(|| {
                format!("`{{{{ {inner} }}}}` is not Dimension('...'), TimeDimension('...', 'grain') or Entity('...')")
            })?;
        let args: Vec<String> = args
            .split(',')
            .map(|a| a.trim().trim_matches(['\'', '"']).to_string())
            .filter(|a| !a.is_empty())
            .collect();
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !args.iter().all(|a| valid(a)) {
            return Err(format!(
                "`{{{{ {inner} }}}}` names something that is not a plain name"
            ));
        }
        let reference = match (func, args.as_slice()) {
            ("Dimension" | "Entity", [name]) => name.clone(),
            ("TimeDimension", [name]) => name.clone(),
            ("TimeDimension", [name, grain]) => format!("{name}__{}", grain.to_lowercase()),
            _ => {
                return Err(format!(
                    "`{{{{ {inner} }}}}` is not Dimension('...'), TimeDimension('...', 'grain') or Entity('...')"
                ));
            }
        };
        out.push_str(&reference);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Converts a parsed expression, refusing anything outside the allowed subset.
fn convert(node: &Expr) -> Result<Filter, String> {
    let b = |e: &Expr| convert(e).map(Box::new);
    Ok(match node {
        Expr::Identifier(ident) if ident.quote_style == Some('"') => {
            return Err(format!(
                "\"{}\" is in double quotes, which SQL reads as a name; write strings in single quotes: '{}'",
                ident.value, ident.value
            ));
        }
        Expr::Identifier(ident) => Filter::Dim(reference(&ident.value)?),
        Expr::CompoundIdentifier(parts) => {
            let joined: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            return Err(format!(
                "`{}` is a qualified name; refer to dimensions as entity__dimension (e.g. {})",
                joined.join("."),
                joined.join("__")
            ));
        }
        Expr::Nested(inner) => convert(inner)?,
        Expr::Value(v) => Filter::Lit(literal(&v.value)?),
        Expr::TypedString(ts) => {
            let text = match &ts.value.value {
                Value::SingleQuotedString(s) => s.clone(),
                other => return Err(format!("`{other}` is not a date or timestamp string")),
            };
            match ts.data_type {
                DataType::Date => {
                    if !text.chars().all(|c| c.is_ascii_digit() || c == '-') {
                        return Err(format!(
                            "DATE '{text}' is not a date like DATE '2025-01-31'"
                        ));
                    }
                    Filter::Lit(Literal::Date(text))
                }
                DataType::Timestamp(..) => {
                    if !text
                        .chars()
                        .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | ' ' | 'T' | '.'))
                    {
                        return Err(format!(
                            "TIMESTAMP '{text}' is not a timestamp like TIMESTAMP '2025-01-31 12:00:00'"
                        ));
                    }
                    Filter::Lit(Literal::Timestamp(text))
                }
                ref other => {
                    return Err(format!(
                        "typed literal `{other} '...'` is not allowed; use a string, DATE '...' or TIMESTAMP '...'"
                    ));
                }
            }
        }
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Filter::Not(b(expr)?),
            UnaryOperator::Minus => match convert(expr)? {
                Filter::Lit(Literal::Number(n)) if !n.starts_with('-') => {
                    Filter::Lit(Literal::Number(format!("-{n}")))
                }
                _ => return Err("`-` applies only to a number".into()),
            },
            UnaryOperator::Plus => match convert(expr)? {
                lit @ Filter::Lit(Literal::Number(_)) => lit,
                _ => return Err("`+` applies only to a number".into()),
            },
            other => return Err(format!("the operator `{other}` is not allowed in a filter")),
        },
        Expr::BinaryOp { left, op, right } => {
            let cmp = match op {
                BinaryOperator::And => return Ok(Filter::And(b(left)?, b(right)?)),
                BinaryOperator::Or => return Ok(Filter::Or(b(left)?, b(right)?)),
                BinaryOperator::Eq => CmpOp::Eq,
                BinaryOperator::NotEq => CmpOp::NotEq,
                BinaryOperator::Lt => CmpOp::Lt,
                BinaryOperator::LtEq => CmpOp::LtEq,
                BinaryOperator::Gt => CmpOp::Gt,
                BinaryOperator::GtEq => CmpOp::GtEq,
                other => {
                    return Err(format!(
                        "the operator `{other}` is not allowed; use =, <>, <, <=, >, >=, AND, OR, NOT, IN, BETWEEN, IS NULL, LIKE"
                    ));
                }
            };
            let (l, r) = (operand(left)?, operand(right)?);
            Filter::Cmp(Box::new(l), cmp, Box::new(r))
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => Filter::InList {
            expr: Box::new(operand(expr)?),
            list: list
                .iter()
                .map(|x| match convert(x)? {
                    lit @ Filter::Lit(_) => Ok(lit),
                    _ => Err("IN (...) takes literal values only".to_string()),
                })
                .collect::<Result<_, String>>()?,
            negated: *negated,
        },
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Filter::Between {
            expr: Box::new(operand(expr)?),
            low: Box::new(operand(low)?),
            high: Box::new(operand(high)?),
            negated: *negated,
        },
        Expr::IsNull(e) => Filter::IsNull {
            expr: Box::new(operand(e)?),
            negated: false,
        },
        Expr::IsNotNull(e) => Filter::IsNull {
            expr: Box::new(operand(e)?),
            negated: true,
        },
        Expr::IsTrue(e) | Expr::IsNotTrue(e) | Expr::IsFalse(e) | Expr::IsNotFalse(e) => {
            Filter::IsBool {
                expr: Box::new(operand(e)?),
                value: matches!(node, Expr::IsTrue(_) | Expr::IsNotTrue(_)),
                negated: matches!(node, Expr::IsNotTrue(_) | Expr::IsNotFalse(_)),
            }
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        }
        | Expr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let pattern = match convert(pattern)? {
                Filter::Lit(Literal::Str(s)) => s,
                _ => return Err("the pattern of LIKE must be a string, e.g. 'EM%'".into()),
            };
            Filter::Like {
                expr: Box::new(operand(expr)?),
                pattern,
                negated: *negated,
                case_insensitive: matches!(node, Expr::ILike { .. }),
            }
        }
        other => {
            return Err(format!(
                "`{other}` is not allowed in a filter; use dimensions, literals, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, LIKE"
            ));
        }
    })
}

/// A comparison operand: a dimension or a literal, never a nested condition.
fn operand(expr: &Expr) -> Result<Filter, String> {
    match convert(expr)? {
        f @ (Filter::Dim(_) | Filter::Lit(_)) => Ok(f),
        _ => Err(format!(
            "`{expr}` cannot be compared; compare a dimension with a value or another dimension"
        )),
    }
}

fn reference(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not a dimension name"));
    }
    Ok(name.to_string())
}

fn literal(value: &Value) -> Result<Literal, String> {
    Ok(match value {
        Value::Number(n, _) => {
            let text = n.to_string();
            if text.parse::<f64>().is_err()
                || !text
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
            {
                return Err(format!("`{text}` is not a number"));
            }
            Literal::Number(text)
        }
        Value::SingleQuotedString(s) => Literal::Str(s.clone()),
        Value::Boolean(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        Value::DoubleQuotedString(s) => {
            return Err(format!(
                "\"{s}\" is in double quotes; write strings in single quotes: '{s}'"
            ));
        }
        other => {
            return Err(format!(
                "the literal `{other}` is not allowed; use numbers, 'strings', TRUE/FALSE, NULL"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> String {
        Filter::parse(text)
            .unwrap()
            .render::<String>(&mut |d| Ok(format!("<{d}>")))
            .unwrap()
    }

    #[test]
    fn accepts_the_allowed_subset_and_renders_it_quoted() {
        assert_eq!(
            render("account__region = 'EMEA'"),
            "(<account__region> = 'EMEA')"
        );
        assert_eq!(
            render("a = 'x' and not (b in (1, 2.5, -3) or c is null)"),
            "((<a> = 'x') AND (NOT ((<b> IN (1, 2.5, -3)) OR (<c> IS NULL))))"
        );
        assert_eq!(
            render("metric_time between date '2025-01-01' and '2025-03-31'"),
            "(<metric_time> BETWEEN DATE '2025-01-01' AND '2025-03-31')"
        );
        assert_eq!(render("name like 'O''Br%'"), "(<name> LIKE 'O''Br%')");
        assert_eq!(render("name not ilike 'a%'"), "(<name> NOT ILIKE 'a%')");
        assert_eq!(render("is_paid is true"), "(<is_paid> IS TRUE)");
        assert_eq!(
            render("{{ Dimension('invoice__status') }} = 'paid'"),
            "(<invoice__status> = 'paid')"
        );
        assert_eq!(
            render("{{ TimeDimension('metric_time', 'month') }} >= '2025-01-01'"),
            "(<metric_time__month> >= '2025-01-01')"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "region = 'x'; drop table t",
            "region = (select 1)",
            "lower(region) = 'x'",
            "amount + 1 > 2",
            "t.region = 'x'",
            "region = \"EMEA\"",
            "cast(region as int) = 1",
            "'EMEA'",
            "region in (select 1)",
            "region = 'a' union select 1",
            "{{ Dimension(x) ",
            "region like other_column",
            "exists (select 1)",
        ] {
            assert!(Filter::parse(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn dims_lists_every_reference() {
        let f = Filter::parse("a = 1 and (b > c or a is null)").unwrap();
        assert_eq!(f.dims(), vec!["a", "b", "c", "a"]);
    }
}
