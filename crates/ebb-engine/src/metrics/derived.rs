//! A derived metric's `expr` (`(revenue - revenue_last_month) / revenue_last_month`):
//! parsed like a filter, limited to arithmetic over its inputs, numbers and a few functions,
//! then rendered with each input replaced by its SQL. Division never divides by zero (it
//! yields NULL) and never truncates (it is done in `DOUBLE PRECISION`).

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Functions a derived expression may call.
const FUNCTIONS: &[&str] = &["coalesce", "nullif", "abs", "round", "greatest", "least"];

/// `expr` with each input name replaced by `inputs[name]`.
pub fn render(expr: &str, inputs: &BTreeMap<String, String>) -> Result<String, String> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(expr)
        .map_err(|e| format!("expr \"{expr}\" is not valid ({e})"))?;
    let parsed = parser
        .parse_expr()
        .map_err(|e| format!("expr \"{expr}\" is not valid ({e})"))?;
    if parser.peek_token().token != Token::EOF {
        return Err(format!("expr \"{expr}\" has text after the expression"));
    }
    walk(&parsed, inputs).map_err(|e| format!("expr \"{expr}\": {e}"))
}

fn walk(e: &Expr, inputs: &BTreeMap<String, String>) -> Result<String, String> {
    Ok(match e {
        Expr::Identifier(id) => inputs.get(&id.value).cloned().ok_or_else(|| {
            format!(
                "`{}` is not one of its inputs ({})",
                id.value,
                inputs.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?,
        Expr::Nested(inner) => format!("({})", walk(inner, inputs)?),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => {
                let text = n.to_string();
                text.parse::<f64>()
                    .map_err(|_| format!("`{text}` is not a number"))?;
                text
            }
            Value::Null => "NULL".into(),
            other => return Err(format!("the literal `{other}` is not allowed; use numbers")),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("(-{})", walk(expr, inputs)?),
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (walk(left, inputs)?, walk(right, inputs)?);
            match op {
                BinaryOperator::Plus => format!("({l} + {r})"),
                BinaryOperator::Minus => format!("({l} - {r})"),
                BinaryOperator::Multiply => format!("({l} * {r})"),
                BinaryOperator::Divide => format!(
                    "(CAST({l} AS DOUBLE PRECISION) / NULLIF(CAST({r} AS DOUBLE PRECISION), 0))"
                ),
                other => {
                    return Err(format!(
                        "the operator `{other}` is not allowed; use + - * / and parentheses"
                    ));
                }
            }
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if !FUNCTIONS.contains(&name.as_str()) || f.over.is_some() || f.filter.is_some() {
                return Err(format!(
                    "`{e}` is not allowed; functions allowed: {}",
                    FUNCTIONS.join(", ")
                ));
            }
            let FunctionArguments::List(list) = &f.args else {
                return Err(format!("`{e}` needs arguments in parentheses"));
            };
            let mut args = Vec::new();
            for a in &list.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(walk(x, inputs)?),
                    _ => return Err(format!("`{e}`: only plain arguments are allowed")),
                }
            }
            if name == "round" && args.len() == 2 {
                // PostgreSQL rounds to digits only numeric, not double precision.
                format!(
                    "CAST(round(CAST({} AS NUMERIC), CAST({} AS INTEGER)) AS DOUBLE PRECISION)",
                    args[0], args[1]
                )
            } else {
                format!("{name}({})", args.join(", "))
            }
        }
        other => {
            return Err(format!(
                "`{other}` is not allowed; use inputs, numbers, + - * /, parentheses and {}",
                FUNCTIONS.join(", ")
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_inputs_and_safe_division() {
        let inputs: BTreeMap<String, String> = [
            ("revenue".to_string(), "(\"__v0\")".to_string()),
            ("last".to_string(), "(\"__v1\")".to_string()),
        ]
        .into();
        assert_eq!(
            render("(revenue - last) / last", &inputs).unwrap(),
            "(CAST((((\"__v0\") - (\"__v1\"))) AS DOUBLE PRECISION) / NULLIF(CAST((\"__v1\") AS DOUBLE PRECISION), 0))"
        );
        assert_eq!(
            render("coalesce(revenue, 0) * 2", &inputs).unwrap(),
            "(coalesce((\"__v0\"), 0) * 2)"
        );
        for bad in [
            "revenue; drop table x",
            "unknown + 1",
            "(select 1)",
            "lower(revenue)",
            "revenue || 'x'",
            "'text'",
        ] {
            assert!(render(bad, &inputs).is_err(), "accepted: {bad}");
        }
    }
}
