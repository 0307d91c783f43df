//! A query's columns as the server describes them (type oid and modifier), mapped to Arrow
//! with `ebb-postgres`'s [`PgType`], and the `COPY` statement that streams them.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use ebb_postgres::types::{ColumnBuilder, CustomType, PgType, TypeRegistry};
use tokio_postgres::Statement;
use tokio_postgres::types::{Kind, Type};

use crate::quote_ident;

/// One output column of a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputColumn {
    pub name: String,
    pub ty: PgType,
    /// The values are read as `::text`: ebb has no decoder for the type's binary form.
    pub as_text: bool,
}

/// The columns a prepared statement returns.
pub(crate) fn output_columns(statement: &Statement) -> Vec<OutputColumn> {
    let mut registry = TypeRegistry::new();
    for column in statement.columns() {
        register(column.type_(), &mut registry, 0);
    }
    statement
        .columns()
        .iter()
        .map(|column| {
            let ty = PgType::resolve(column.type_().oid(), column.type_modifier(), &registry);
            if ColumnBuilder::new(ty.clone()).supports_binary() {
                OutputColumn {
                    name: column.name().to_string(),
                    ty,
                    as_text: false,
                }
            } else {
                OutputColumn {
                    name: column.name().to_string(),
                    ty: PgType::Text,
                    as_text: true,
                }
            }
        })
        .collect()
}

/// Describes the non-built-in types `ty` uses, as `tokio-postgres` looked them up.
fn register(ty: &Type, registry: &mut TypeRegistry, depth: u8) {
    if Type::from_oid(ty.oid()).is_some() || depth > 8 {
        return;
    }
    let name = ty.name().to_string();
    let custom = match ty.kind() {
        Kind::Enum(_) => CustomType::Enum { name },
        Kind::Array(element) => {
            register(element, registry, depth + 1);
            CustomType::Array {
                name,
                element: element.oid(),
            }
        }
        Kind::Domain(base) => {
            register(base, registry, depth + 1);
            // tokio-postgres does not report the base type's modifier.
            CustomType::Domain {
                name,
                base: base.oid(),
                base_modifier: -1,
            }
        }
        _ => CustomType::Other { name },
    };
    registry.insert(ty.oid(), custom);
}

/// The Arrow schema of these columns, as the COPY reader builds it.
pub(crate) fn arrow_schema(columns: &[OutputColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| c.ty.field(&c.name, true))
            .collect::<Vec<_>>(),
    ))
}

/// `COPY (sql) TO STDOUT (FORMAT binary)`, casting the columns ebb reads as text.
pub(crate) fn copy_statement(sql: &str, columns: &[OutputColumn]) -> String {
    if !columns.iter().any(|c| c.as_text) {
        return format!("COPY (\n{sql}\n) TO STDOUT (FORMAT binary)");
    }
    // Columns are renamed positionally, so duplicate or odd names cannot get in the way.
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("__ebb_c{i}")).collect();
    let select: Vec<String> = columns
        .iter()
        .zip(&aliases)
        .map(|(c, alias)| {
            let cast = if c.as_text { "::text" } else { "" };
            format!("{alias}{cast} as {}", quote_ident(&c.name))
        })
        .collect();
    format!(
        "COPY (select {} from (\n{sql}\n) as __ebb_q({})) TO STDOUT (FORMAT binary)",
        select.join(", "),
        aliases.join(", ")
    )
}

/// The relation of a query that is exactly `select * from <relation>` (a name, optionally
/// schema-qualified, quoted or not), as written; `None` for any other query.
pub(crate) fn whole_table(sql: &str) -> Option<&str> {
    let rest = keyword(sql.trim_start(), "select")?;
    let rest = rest.trim_start().strip_prefix('*')?;
    let rest = keyword(rest.trim_start(), "from")?;
    let relation = rest.trim();
    let mut parts = 0;
    let mut chars = relation.chars().peekable();
    loop {
        match chars.next()? {
            '"' => loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            },
            c if c.is_alphabetic() || c == '_' => {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    chars.next();
                }
            }
            _ => return None,
        }
        parts += 1;
        match chars.next() {
            None => break,
            Some('.') if parts < 2 => {}
            Some(_) => return None,
        }
    }
    Some(relation)
}

/// `text` after a leading case-insensitive `word` followed by white space.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, ty: PgType, as_text: bool) -> OutputColumn {
        OutputColumn {
            name: name.into(),
            ty,
            as_text,
        }
    }

    #[test]
    fn copy_wraps_the_query_only_when_a_column_is_read_as_text() {
        let plain = [column("id", PgType::Int8, false)];
        assert_eq!(
            copy_statement("select 1 as id", &plain),
            "COPY (\nselect 1 as id\n) TO STDOUT (FORMAT binary)"
        );
        let mixed = [
            column("id", PgType::Int8, false),
            column("p", PgType::Text, true),
        ];
        assert_eq!(
            copy_statement("select 1, point(1,2)", &mixed),
            "COPY (select __ebb_c0 as \"id\", __ebb_c1::text as \"p\" from (\nselect 1, point(1,2)\n) as __ebb_q(__ebb_c0, __ebb_c1)) TO STDOUT (FORMAT binary)"
        );
    }

    #[test]
    fn whole_table_reads_are_recognised_and_nothing_else() {
        assert_eq!(whole_table("select * from t"), Some("t"));
        assert_eq!(
            whole_table("  SELECT  *\n FROM \"analytics\".\"Big \"\"x\"\"\"  "),
            Some("\"analytics\".\"Big \"\"x\"\"\"")
        );
        assert_eq!(whole_table("select * from public.t_1"), Some("public.t_1"));
        for other in [
            "select * from t where id > 1",
            "select * from t limit 5",
            "select id from t",
            "select * from a, b",
            "select * from a.b.c",
            "select * from t -- comment",
            "select * from (select 1) q",
            "selectx * from t",
            "select * from \"unterminated",
            "select * from",
        ] {
            assert_eq!(whole_table(other), None, "{other}");
        }
    }
}
