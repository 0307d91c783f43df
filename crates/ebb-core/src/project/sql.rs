//! The template syntax of SQL models: `{{ ref('model') }}` and `{{ source('src', 'table') }}`.

use crate::yaml::Pos;

/// One `{{ ... }}` in a model's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    Model {
        name: String,
        pos: Pos,
    },
    Source {
        source: String,
        table: String,
        pos: Pos,
    },
}

/// A template expression ebb does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub pos: Pos,
    pub message: String,
}

/// Every `ref()` and `source()` in `sql`, in order, and every malformed template.
pub fn template_refs(sql: &str) -> (Vec<TemplateRef>, Vec<TemplateError>) {
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    let mut offset = 0;
    while let Some(found) = find_open(&sql[offset..]) {
        let (start, is_block) = (offset + found.0, found.1);
        let pos = pos_at(sql, start);
        let close = if is_block { "%}" } else { "}}" };
        let Some(len) = sql[start + 2..].find(close) else {
            errors.push(TemplateError {
                pos,
                message: format!(
                    "`{}` is never closed with `{close}`",
                    &sql[start..start + 2]
                ),
            });
            break;
        };
        let inner = sql[start + 2..start + 2 + len].trim();
        offset = start + 2 + len + 2;
        if is_block {
            errors.push(TemplateError {
                pos,
                message: format!(
                    "`{{% {inner} %}}`: ebb models support only `{{{{ ref('model') }}}}` and `{{{{ source('source', 'table') }}}}`"
                ),
            });
            continue;
        }
        match parse_call(inner) {
            Some((func, args)) if func == "ref" && args.len() == 1 => refs.push(TemplateRef::Model {
                name: args[0].clone(),
                pos,
            }),
            Some((func, args)) if func == "source" && args.len() == 2 => {
                refs.push(TemplateRef::Source {
                    source: args[0].clone(),
                    table: args[1].clone(),
                    pos,
                })
            }
            Some((func, args)) if func == "ref" || func == "source" => errors.push(TemplateError {
                pos,
                message: format!(
                    "`{func}()` takes {} quoted name{}, got {}",
                    if func == "ref" { "one" } else { "two" },
                    if func == "ref" { "" } else { "s" },
                    args.len()
                ),
            }),
            _ => errors.push(TemplateError {
                pos,
                message: format!(
                    "`{{{{ {inner} }}}}` is not understood: ebb models support `{{{{ ref('model') }}}}` and `{{{{ source('source', 'table') }}}}`"
                ),
            }),
        }
    }
    (refs, errors)
}

/// Replaces every `ref()`/`source()` with what `resolve` returns for it.
pub fn render(sql: &str, mut resolve: impl FnMut(&TemplateRef) -> String) -> String {
    let (refs, _) = template_refs(sql);
    let mut out = String::with_capacity(sql.len());
    let mut offset = 0;
    let mut refs = refs.iter();
    while let Some((found, false)) = find_open(&sql[offset..]) {
        let start = offset + found;
        let Some(len) = sql[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&sql[offset..start]);
        match refs.next() {
            Some(r) => out.push_str(&resolve(r)),
            None => out.push_str(&sql[start..start + len + 4]),
        }
        offset = start + 2 + len + 2;
    }
    out.push_str(&sql[offset..]);
    out
}

fn find_open(s: &str) -> Option<(usize, bool)> {
    let a = s.find("{{");
    let b = s.find("{%");
    match (a, b) {
        (Some(a), Some(b)) if b < a => Some((b, true)),
        (Some(a), _) => Some((a, false)),
        (None, Some(b)) => Some((b, true)),
        (None, None) => None,
    }
}

/// `ref('a')` → ("ref", ["a"]); arguments must be quoted strings.
fn parse_call(inner: &str) -> Option<(String, Vec<String>)> {
    let open = inner.find('(')?;
    let func = inner[..open].trim();
    if !func.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || func.is_empty() {
        return None;
    }
    let args = inner[open + 1..].trim_end().strip_suffix(')')?;
    let mut out = Vec::new();
    for arg in args.split(',') {
        let arg = arg.trim();
        if arg.is_empty() {
            continue;
        }
        let unquoted = arg
            .strip_prefix('\'')
            .and_then(|a| a.strip_suffix('\''))
            .or_else(|| arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')))?;
        out.push(unquoted.to_string());
    }
    Some((func.to_string(), out))
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn pos_at(text: &str, at: usize) -> Pos {
    let before = &text[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..at].chars().count() as u32 + 1;
    Pos::new(line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_refs_and_sources_with_positions() {
        let sql = "select *\nfrom {{ ref('a') }} x\njoin {{source(\"app\", 'users')}} u on true";
        let (refs, errors) = template_refs(sql);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            refs,
            vec![
                TemplateRef::Model {
                    name: "a".into(),
                    pos: Pos::new(2, 6)
                },
                TemplateRef::Source {
                    source: "app".into(),
                    table: "users".into(),
                    pos: Pos::new(3, 6)
                },
            ]
        );
    }

    #[test]
    fn reports_unsupported_templates() {
        let (_, errors) = template_refs(
            "{{ config(materialized='table') }}\n{% if x %}\n{{ ref(a) }}\n{{ ref('x'",
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(errors[1].pos, Pos::new(2, 1));
    }

    #[test]
    fn renders_refs() {
        let out = render(
            "select * from {{ ref('a') }} join {{ source('s','t') }}",
            |r| match r {
                TemplateRef::Model { name, .. } => format!("\"{name}\""),
                TemplateRef::Source { source, table, .. } => format!("{source}.{table}"),
            },
        );
        assert_eq!(out, "select * from \"a\" join s.t");
    }
}
