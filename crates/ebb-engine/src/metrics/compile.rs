//! A metric query → one SQL statement.
//!
//! # Shape of the SQL
//! ```text
//! WITH "__q0" AS (            -- one per (semantic model, filters, time offset): its measures,
//!   SELECT <group-by columns>,  --   aggregated at the query's grain over the model's own
//!          SUM(...) AS "__v0"   --   rows, with many-to-one LEFT JOINs for the dimensions
//!   FROM <model> AS s0 LEFT JOIN <model> AS s1 ON ...
//!   WHERE <filters>  GROUP BY <group-by columns>),
//! "__q1" AS (...),            -- cumulative measures: periods × rows in each period's window
//! "__all" AS (                -- the aggregates side by side: UNION ALL, then one row per
//!   SELECT <cols>, MAX("__v0") AS "__v0", MAX("__v1") ...   -- group (NULL-safe, no join)
//!   FROM (SELECT ... FROM "__q0" UNION ALL SELECT ... FROM "__q1") GROUP BY <cols>)
//! SELECT <cols>, <metric expressions over "__v*"> FROM "__all" ORDER BY ... LIMIT ...
//! ```
//! Every measure is aggregated in its own semantic model's CTE, before anything is combined,
//! and the only joins inside a CTE go toward a primary (or unique) entity: a many-to-one join
//! adds columns, never rows. Measures from different semantic models meet only after each
//! has been reduced to one row per group, through `UNION ALL` + `GROUP BY` (which also
//! matches NULL group values, where a join on `=` would not).
//!
//! Metric values are typed the same on every engine: counts are `BIGINT`, everything else
//! `DOUBLE PRECISION` (sums are computed exactly in the column's own type and cast at the
//! end; averages, medians and percentiles are computed over `DOUBLE PRECISION`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ebb_core::config::metrics::{
    Agg, DimensionType, Grain, Measure, MetricInput, MetricType, parse_window,
};
use ebb_warehouse::quote_ident;

use super::filter::Filter;
use super::semantic::{Column, DimRef, Reached, SemanticGraph, grain_name};
use super::{Dialect, MetricQuery, MetricsError};

/// The SQL for a query, and what its columns are.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    pub sql: String,
    /// Output columns in order: the group-by columns, then one per metric.
    pub columns: Vec<OutputColumn>,
    /// The SQL models the query reads.
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub is_metric: bool,
}

/// A rolling window or grain-to-date accumulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cumulative {
    Window(u32, Grain),
    ToDate(Grain),
    AllTime,
}

/// One aggregation of one measure in some context.
#[derive(Debug, Clone)]
struct Value<'p> {
    measure: &'p Measure,
    filter: Option<Filter>,
    offset: Option<(u32, Grain)>,
    cumulative: Option<Cumulative>,
    /// Where it is computed.
    cte: usize,
}

/// A CTE computing some values.
#[derive(Debug)]
struct Cte<'p> {
    model: usize,
    /// The agg time dimension of its measures (they share one).
    time_dim: &'p str,
    filter_key: String,
    filter: Option<Filter>,
    offset: Option<(u32, Grain)>,
    cumulative: Option<Cumulative>,
    values: Vec<usize>,
}

/// A group-by column of the query.
#[derive(Debug, Clone)]
enum GroupBy {
    MetricTime { name: String, grain: Grain },
    Ref(DimRef),
}

impl GroupBy {
    fn name(&self) -> &str {
        match self {
            GroupBy::MetricTime { name, .. } => name,
            GroupBy::Ref(r) => &r.text,
        }
    }
}

/// Context a metric's inputs are computed in.
#[derive(Debug, Clone, Default)]
struct Ctx {
    filter: Option<Filter>,
    offset: Option<(u32, Grain)>,
}

struct Planner<'g, 'p> {
    graph: &'g SemanticGraph<'p>,
    dialect: Dialect,
    group_by: Vec<GroupBy>,
    /// The query's metric_time grain, when it groups by time.
    time_grain: Option<Grain>,
    values: Vec<Value<'p>>,
    ctes: Vec<Cte<'p>>,
    /// Metrics being expanded (cycle guard).
    stack: Vec<String>,
}

/// Compiles `query`. `relation` gives the SQL (a subquery in parentheses, or a relation name)
/// that reads a model's result.
pub fn compile(
    graph: &SemanticGraph<'_>,
    query: &MetricQuery,
    dialect: Dialect,
    relation: &dyn Fn(&str) -> Result<String, MetricsError>,
) -> Result<CompiledQuery, MetricsError> {
    if query.metrics.is_empty() {
        return Err(MetricsError::Query(
            "no metrics asked for; name at least one with --metrics (see `ebb metrics list`)"
                .into(),
        ));
    }
    let mut group_by = Vec::new();
    let mut time_grain = None;
    for text in &query.group_by {
        let r = DimRef::parse(text)?;
        if r.is_metric_time() {
            if time_grain.is_some() {
                return Err(MetricsError::Query(
                    "group by metric_time once (one grain per query)".into(),
                ));
            }
            let grain = r.grain.or(query.grain).unwrap_or(Grain::Day);
            if let (Some(a), Some(b)) = (r.grain, query.grain)
                && a != b
            {
                return Err(MetricsError::Query(format!(
                    "--grain {} disagrees with \"{text}\"; give the grain once",
                    grain_name(b)
                )));
            }
            time_grain = Some(grain);
            group_by.push(GroupBy::MetricTime {
                name: format!("metric_time__{}", grain_name(grain)),
                grain,
            });
        } else {
            group_by.push(GroupBy::Ref(r));
        }
    }
    if let (None, Some(grain)) = (time_grain, query.grain) {
        time_grain = Some(grain);
        group_by.insert(
            0,
            GroupBy::MetricTime {
                name: format!("metric_time__{}", grain_name(grain)),
                grain,
            },
        );
    }
    let mut names: Vec<&str> = group_by.iter().map(GroupBy::name).collect();
    for m in &query.metrics {
        names.push(m);
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(MetricsError::Query(format!(
                "\"{n}\" appears twice in the query's columns"
            )));
        }
    }

    let filter = match &query.filter {
        Some(text) if !text.trim().is_empty() => Some(Filter::parse(text)?),
        _ => None,
    };
    let mut planner = Planner {
        graph,
        dialect,
        group_by,
        time_grain,
        values: Vec::new(),
        ctes: Vec::new(),
        stack: Vec::new(),
    };
    let mut metric_sql = Vec::new();
    for name in &query.metrics {
        let ctx = Ctx {
            filter: filter.clone(),
            offset: None,
        };
        metric_sql.push((name.clone(), planner.metric(name, &ctx)?));
    }
    planner.render(query, &metric_sql, relation)
}

impl<'p> Planner<'_, 'p> {
    /// SQL for metric `name` over the `__all` CTE's value columns.
    fn metric(&mut self, name: &str, ctx: &Ctx) -> Result<String, MetricsError> {
        if self.stack.iter().any(|s| s == name) {
            return Err(MetricsError::Query(format!(
                "metrics depend on each other in a cycle: {} -> {name}",
                self.stack.join(" -> ")
            )));
        }
        let def = self.graph.metric(name)?;
        self.stack.push(name.to_string());
        let mut ctx = ctx.clone();
        if let Some(f) = &def.filter {
            ctx.filter = Filter::and(ctx.filter, Some(Filter::parse(&f.value)?));
        }
        let params = &def.type_params.value;
        let missing = |field: &str| {
            MetricsError::Query(format!(
                "metric \"{name}\" has no `type_params.{field}`; run `ebb check`"
            ))
        };
        let sql = match def.kind.value {
            MetricType::Simple => {
                let input = params.measure.as_ref().ok_or_else(|| missing("measure"))?;
                let col = self.measure_value(&input.value, &ctx, None)?;
                format!("\"__v{col}\"")
            }
            MetricType::Cumulative => {
                let input = params.measure.as_ref().ok_or_else(|| missing("measure"))?;
                let cumulative = match (&params.window, params.grain_to_date) {
                    (Some(w), _) => {
                        let (n, g) = parse_window(&w.value).map_err(MetricsError::Query)?;
                        Cumulative::Window(n, g)
                    }
                    (None, Some(g)) => Cumulative::ToDate(g),
                    (None, None) => Cumulative::AllTime,
                };
                if ctx.offset.is_some() {
                    return Err(MetricsError::Unsupported(format!(
                        "metric \"{name}\": a time offset of a cumulative metric"
                    )));
                }
                let col = self.measure_value(&input.value, &ctx, Some(cumulative))?;
                format!("\"__v{col}\"")
            }
            MetricType::Ratio => {
                let num = params
                    .numerator
                    .as_ref()
                    .ok_or_else(|| missing("numerator"))?;
                let den = params
                    .denominator
                    .as_ref()
                    .ok_or_else(|| missing("denominator"))?;
                let n = self.input(&num.value, &ctx)?;
                let d = self.input(&den.value, &ctx)?;
                format!(
                    "(CAST({n} AS DOUBLE PRECISION) / NULLIF(CAST({d} AS DOUBLE PRECISION), 0))"
                )
            }
            MetricType::Derived => {
                let expr = params.expr.as_ref().ok_or_else(|| missing("expr"))?;
                let mut inputs = BTreeMap::new();
                for input in &params.metrics {
                    let sql = self.input(&input.value, &ctx)?;
                    inputs.insert(input.value.alias_or_name().to_string(), sql);
                }
                super::derived::render(&expr.value, &inputs)
                    .map_err(|e| MetricsError::Query(format!("metric \"{name}\": {e}")))?
            }
        };
        self.stack.pop();
        Ok(sql)
    }

    /// An input metric of a ratio or derived metric, with its own filter and offset.
    fn input(&mut self, input: &MetricInput, ctx: &Ctx) -> Result<String, MetricsError> {
        let mut ctx = ctx.clone();
        if let Some(f) = &input.filter {
            ctx.filter = Filter::and(ctx.filter, Some(Filter::parse(f)?));
        }
        if input.offset_to_grain.is_some() {
            return Err(MetricsError::Unsupported(format!(
                "input \"{}\": offset_to_grain (use offset_window)",
                input.name
            )));
        }
        if let Some(w) = &input.offset_window {
            if ctx.offset.is_some() {
                return Err(MetricsError::Unsupported(format!(
                    "input \"{}\": a time offset inside another offset metric",
                    input.name
                )));
            }
            ctx.offset = Some(parse_window(w).map_err(MetricsError::Query)?);
        }
        Ok(format!("({})", self.metric(&input.name, &ctx)?))
    }

    /// The value column (index) computing `input` in `ctx`; shared when already planned.
    fn measure_value(
        &mut self,
        input: &MetricInput,
        ctx: &Ctx,
        cumulative: Option<Cumulative>,
    ) -> Result<usize, MetricsError> {
        let (model, measure) = self.graph.measure(&input.name)?;
        let filter = Filter::and(
            ctx.filter.clone(),
            input.filter.as_deref().map(Filter::parse).transpose()?,
        );
        let cumulative = match cumulative {
            Some(Cumulative::AllTime) if self.time_grain.is_none() => None,
            Some(_) if self.time_grain.is_none() => {
                return Err(MetricsError::Query(format!(
                    "measure \"{}\" accumulates over time: group by metric_time (e.g. --grain month)",
                    input.name
                )));
            }
            c => c,
        };
        if ctx.offset.is_some() && self.time_grain.is_none() {
            return Err(MetricsError::Query(format!(
                "an offset of \"{}\" compares periods: group by metric_time (e.g. --grain month)",
                input.name
            )));
        }
        let time_dim = self.graph.agg_time(model, measure)?.name.value.as_str();
        let filter_key = filter.as_ref().map(ToString::to_string).unwrap_or_default();
        if let Some(i) = self.values.iter().position(|v| {
            std::ptr::eq(v.measure, measure)
                && v.offset == ctx.offset
                && v.cumulative == cumulative
                && v.filter
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
                    == filter_key
        }) {
            return Ok(i);
        }
        let index = self.values.len();
        // Share a CTE with measures of the same model, filter, offset and time (not for
        // cumulative ones: each has its own window).
        let cte = match self.ctes.iter().position(|c| {
            cumulative.is_none()
                && c.cumulative.is_none()
                && c.model == model
                && c.time_dim == time_dim
                && c.filter_key == filter_key
                && c.offset == ctx.offset
        }) {
            Some(c) => c,
            None => {
                self.ctes.push(Cte {
                    model,
                    time_dim,
                    filter_key,
                    filter: filter.clone(),
                    offset: ctx.offset,
                    cumulative,
                    values: Vec::new(),
                });
                self.ctes.len() - 1
            }
        };
        self.ctes[cte].values.push(index);
        self.values.push(Value {
            measure,
            filter,
            offset: ctx.offset,
            cumulative,
            cte,
        });
        Ok(index)
    }

    fn render(
        &self,
        query: &MetricQuery,
        metrics: &[(String, String)],
        relation: &dyn Fn(&str) -> Result<String, MetricsError>,
    ) -> Result<CompiledQuery, MetricsError> {
        let mut sql = String::from("WITH ");
        let mut used_models: Vec<String> = Vec::new();
        let cols: Vec<String> = self
            .group_by
            .iter()
            .map(|g| quote_ident(g.name()))
            .collect();
        for (ci, cte) in self.ctes.iter().enumerate() {
            let body = self.render_cte(ci, cte, relation, &mut used_models)?;
            if ci > 0 {
                sql.push_str(",\n");
            }
            sql.push_str(&body);
        }
        // All values side by side.
        let any_offset = self.ctes.iter().any(|c| c.offset.is_some());
        let any_base = self.ctes.iter().any(|c| c.offset.is_none());
        let needs_marker = any_offset && any_base;
        if self.ctes.len() == 1 {
            let _ = write!(sql, ",\n\"__all\" AS (SELECT * FROM \"__q0\")");
        } else {
            let mut branches = Vec::new();
            for (ci, cte) in self.ctes.iter().enumerate() {
                let mut items = cols.clone();
                for (vi, v) in self.values.iter().enumerate() {
                    if v.cte == ci {
                        items.push(format!("\"__v{vi}\""));
                    } else {
                        items.push(format!(
                            "CAST(NULL AS {}) AS \"__v{vi}\"",
                            value_type(v.measure.agg.value)
                        ));
                    }
                }
                if needs_marker {
                    items.push(if cte.offset.is_none() {
                        "CAST(1 AS INTEGER) AS \"__base\"".into()
                    } else {
                        "CAST(NULL AS INTEGER) AS \"__base\"".into()
                    });
                }
                branches.push(format!("  SELECT {} FROM \"__q{ci}\"", items.join(", ")));
            }
            let mut outer = cols.clone();
            for vi in 0..self.values.len() {
                outer.push(format!("MAX(\"__v{vi}\") AS \"__v{vi}\""));
            }
            let _ = write!(
                sql,
                ",\n\"__all\" AS (\nSELECT {}\nFROM (\n{}\n) AS \"__u\"",
                outer.join(", "),
                branches.join("\n  UNION ALL\n")
            );
            if !cols.is_empty() {
                let _ = write!(sql, "\nGROUP BY {}", cols.join(", "));
            }
            if needs_marker {
                // Periods that only a shifted input reaches (past the data's end) are left out.
                sql.push_str("\nHAVING MAX(\"__base\") IS NOT NULL");
            }
            sql.push_str("\n)");
        }
        let mut select = cols.clone();
        for (name, expr) in metrics {
            select.push(format!("{expr} AS {}", quote_ident(name)));
        }
        let _ = write!(
            sql,
            "\nSELECT {}\nFROM \"__all\"",
            select.join(",\n       ")
        );

        let mut columns: Vec<OutputColumn> = self
            .group_by
            .iter()
            .map(|g| OutputColumn {
                name: g.name().to_string(),
                is_metric: false,
            })
            .collect();
        columns.extend(metrics.iter().map(|(n, _)| OutputColumn {
            name: n.clone(),
            is_metric: true,
        }));
        let mut order = Vec::new();
        for o in &query.order {
            let (name, desc) = match o.strip_prefix('-') {
                Some(n) => (n.trim(), true),
                None => {
                    let t = o.trim();
                    match t.rsplit_once(char::is_whitespace) {
                        Some((n, dir)) if dir.eq_ignore_ascii_case("desc") => (n.trim(), true),
                        Some((n, dir)) if dir.eq_ignore_ascii_case("asc") => (n.trim(), false),
                        _ => (t, false),
                    }
                }
            };
            // `metric_time` in --order means the query's metric_time column, at any grain.
            let resolved = columns.iter().find(|c| {
                c.name == name || (name == "metric_time" && c.name.starts_with("metric_time__"))
            });
            let Some(col) = resolved else {
                return Err(MetricsError::Query(format!(
                    "--order \"{name}\" is not a column of this query (columns: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            order.push(format!(
                "{} {} NULLS LAST",
                quote_ident(&col.name),
                if desc { "DESC" } else { "ASC" }
            ));
        }
        if order.is_empty() {
            order = cols.iter().map(|c| format!("{c} ASC NULLS LAST")).collect();
        }
        if !order.is_empty() {
            let _ = write!(sql, "\nORDER BY {}", order.join(", "));
        }
        if let Some(limit) = query.limit {
            let _ = write!(sql, "\nLIMIT {limit}");
        }
        used_models.sort();
        used_models.dedup();
        Ok(CompiledQuery {
            sql,
            columns,
            models: used_models,
        })
    }

    /// `"__qN" AS (...)` for one CTE.
    fn render_cte(
        &self,
        ci: usize,
        cte: &Cte<'p>,
        relation: &dyn Fn(&str) -> Result<String, MetricsError>,
        used_models: &mut Vec<String>,
    ) -> Result<String, MetricsError> {
        let mut joins = Joins::new(cte.model);
        // Group-by expressions over the row sources; metric_time separately.
        let mut dims: Vec<(String, String)> = Vec::new(); // (column name, expression)
        let mut time_col: Option<(String, Grain)> = None;
        for g in &self.group_by {
            match g {
                GroupBy::MetricTime { name, grain } => time_col = Some((name.clone(), *grain)),
                GroupBy::Ref(r) => {
                    let reached = self.graph.reach(cte.model, r)?;
                    let expr = self.column_sql(&mut joins, &reached, r)?;
                    dims.push((r.text.clone(), expr));
                }
            }
        }
        let time_value = format!("s0.{}", quote_ident(&format!("__d_{}", cte.time_dim)));
        let time_raw = format!("CAST({time_value} AS TIMESTAMP)");
        // An offset input's rows count for the period they are shifted to, and a filter on
        // metric_time means that period.
        let time_shifted = match cte.offset {
            Some((n, g)) => format!("{time_raw} + {}", interval(n, g)),
            // DataFusion's period function reads dates and timestamps of any unit as they
            // are; casting 100M timestamps to nanoseconds first cost as much as the rest.
            None if self.dialect == Dialect::DataFusion => time_value,
            None => time_raw.clone(),
        };
        let where_sql = match &cte.filter {
            Some(f) => Some(f.render(&mut |d| {
                let r = DimRef::parse(d)?;
                if r.is_metric_time() {
                    let grain = r.grain.unwrap_or(Grain::Day);
                    return Ok(trunc(self.dialect, &time_shifted, grain));
                }
                let reached = self.graph.reach(cte.model, &r)?;
                self.column_sql(&mut joins, &reached, &r)
            })?),
            None => None,
        };

        // Which measures, and which columns of their model, are needed.
        let measures: Vec<(usize, &Measure)> = cte
            .values
            .iter()
            .map(|&vi| (vi, self.values[vi].measure))
            .collect();
        let from = self.sources_sql(&joins, cte.model, &measures, relation, used_models)?;

        let mut out = format!("\"__q{ci}\" AS (\n");
        match (cte.cumulative, &time_col) {
            (Some(cumulative), Some((time_name, grain))) => {
                // Rows with their group values, time and measure inputs ...
                let mut row_items: Vec<String> = dims
                    .iter()
                    .map(|(n, e)| format!("{e} AS {}", quote_ident(n)))
                    .collect();
                row_items.push(format!("{time_raw} AS \"__t\""));
                for (vi, m) in &measures {
                    row_items.push(format!(
                        "s0.{} AS \"__x{vi}\"",
                        quote_ident(&format!("__m_{}", m.name.value))
                    ));
                }
                let dim_cols: Vec<String> = dims.iter().map(|(n, _)| quote_ident(n)).collect();
                let mut periods_items = dim_cols.clone();
                periods_items.push(format!(
                    "date_trunc('{}', \"__t\") AS \"__p\"",
                    grain_name(*grain)
                ));
                let mut select_items: Vec<String> =
                    dim_cols.iter().map(|c| format!("p.{c}")).collect();
                select_items.push(format!(
                    "CAST(p.\"__p\" AS DATE) AS {}",
                    quote_ident(time_name)
                ));
                for (vi, m) in &measures {
                    select_items.push(format!(
                        "{} AS \"__v{vi}\"",
                        self.aggregate(m, &format!("r.\"__x{vi}\""))
                    ));
                }
                let mut on: Vec<String> = dim_cols
                    .iter()
                    .map(|c| format!("(p.{c} IS NOT DISTINCT FROM r.{c})"))
                    .collect();
                let period_end = format!("p.\"__p\" + {}", interval(1, *grain));
                on.push(format!("(r.\"__t\" < {period_end})"));
                match cumulative {
                    Cumulative::AllTime => {}
                    Cumulative::Window(n, g) => {
                        on.push(format!("(r.\"__t\" >= {period_end} - {})", interval(n, g)))
                    }
                    Cumulative::ToDate(g) => on.push(format!(
                        "(r.\"__t\" >= date_trunc('{}', p.\"__p\"))",
                        grain_name(g)
                    )),
                }
                let mut group: Vec<String> = dim_cols.iter().map(|c| format!("p.{c}")).collect();
                group.push("p.\"__p\"".into());
                let _ = write!(
                    out,
                    "  SELECT {}\n  FROM (\n    SELECT DISTINCT {}\n    FROM (\n      SELECT {}\n      FROM {from}{}\n    ) AS \"__rows\"\n  ) AS p\n  JOIN (\n    SELECT {}\n    FROM {from}{}\n  ) AS r ON {}\n  GROUP BY {}\n)",
                    select_items.join(", "),
                    periods_items.join(", "),
                    row_items.join(", "),
                    where_clause(&where_sql),
                    row_items.join(", "),
                    where_clause(&where_sql),
                    on.join(" AND "),
                    group.join(", ")
                );
            }
            _ => {
                let mut items = Vec::new();
                let mut group = Vec::new();
                for g in &self.group_by {
                    match g {
                        GroupBy::MetricTime { name, grain } => {
                            let expr = trunc(self.dialect, &time_shifted, *grain);
                            items.push(format!("{expr} AS {}", quote_ident(name)));
                            group.push(expr);
                        }
                        GroupBy::Ref(r) => {
                            let (_, expr) = dims
                                .iter()
                                .find(|(n, _)| *n == r.text)
                                .expect("every group-by reference was resolved above");
                            items.push(format!("{expr} AS {}", quote_ident(&r.text)));
                            group.push(expr.clone());
                        }
                    }
                }
                for (vi, m) in &measures {
                    let input = format!("s0.{}", quote_ident(&format!("__m_{}", m.name.value)));
                    items.push(format!("{} AS \"__v{vi}\"", self.aggregate(m, &input)));
                }
                let _ = write!(
                    out,
                    "  SELECT {}\n  FROM {from}{}",
                    items.join(",\n         "),
                    where_clause(&where_sql)
                );
                if !group.is_empty() {
                    let _ = write!(out, "\n  GROUP BY {}", group.join(", "));
                }
                out.push_str("\n)");
            }
        }
        Ok(out)
    }

    /// `<model> AS s0 LEFT JOIN <model> AS s1 ON ...` with each model projected to the
    /// entities, dimensions and measures under their `__e_`, `__d_`, `__m_` names.
    fn sources_sql(
        &self,
        joins: &Joins<'p>,
        base: usize,
        measures: &[(usize, &Measure)],
        relation: &dyn Fn(&str) -> Result<String, MetricsError>,
        used_models: &mut Vec<String>,
    ) -> Result<String, MetricsError> {
        let mut out = String::new();
        for (alias, source) in joins.sources.iter().enumerate() {
            let model_name = self.graph.model_name(source.model);
            used_models.push(model_name.to_string());
            let sm = self.graph.model(source.model);
            let mut items = Vec::new();
            for e in &sm.entities {
                let expr = e
                    .expr
                    .as_ref()
                    .map_or(e.name.value.as_str(), |x| x.value.as_str());
                items.push(format!(
                    "{} AS {}",
                    column_expr(expr),
                    quote_ident(&format!("__e_{}", e.name.value))
                ));
            }
            for d in &sm.dimensions {
                let expr = d
                    .expr
                    .as_ref()
                    .map_or(d.name.value.as_str(), |x| x.value.as_str());
                items.push(format!(
                    "{} AS {}",
                    column_expr(expr),
                    quote_ident(&format!("__d_{}", d.name.value))
                ));
            }
            if source.model == base && alias == 0 {
                for (_, m) in measures {
                    let expr = m
                        .expr
                        .as_ref()
                        .map_or(m.name.value.as_str(), |x| x.value.as_str());
                    items.push(format!(
                        "{} AS {}",
                        column_expr(expr),
                        quote_ident(&format!("__m_{}", m.name.value))
                    ));
                }
            }
            let sub = format!(
                "(SELECT {} FROM {} AS \"__model\")",
                items.join(", "),
                relation(model_name)?
            );
            match &source.via {
                None => {
                    let _ = write!(out, "{sub} AS s{alias}");
                }
                Some((parent, entity)) => {
                    let key = quote_ident(&format!("__e_{entity}"));
                    let _ = write!(
                        out,
                        "\n  LEFT JOIN {sub} AS s{alias} ON (s{parent}.{key} = s{alias}.{key})"
                    );
                }
            }
        }
        Ok(out)
    }

    /// The expression for a reached column, adding the joins it needs.
    fn column_sql(
        &self,
        joins: &mut Joins<'p>,
        reached: &Reached<'p>,
        r: &DimRef,
    ) -> Result<String, MetricsError> {
        let alias = joins.alias_for(self.graph, &reached.joins);
        match reached.column {
            Column::Entity(e) => {
                if r.grain.is_some() {
                    return Err(MetricsError::Query(format!(
                        "\"{}\": an entity has no time grain",
                        r.text
                    )));
                }
                Ok(format!(
                    "s{alias}.{}",
                    quote_ident(&format!("__e_{}", e.name.value))
                ))
            }
            Column::Dimension(d) => {
                let col = format!("s{alias}.{}", quote_ident(&format!("__d_{}", d.name.value)));
                match d.kind {
                    DimensionType::Categorical => {
                        if r.grain.is_some() {
                            return Err(MetricsError::Query(format!(
                                "\"{}\": {} is categorical and has no time grain",
                                r.text, d.name.value
                            )));
                        }
                        Ok(col)
                    }
                    DimensionType::Time => {
                        let grain = r
                            .grain
                            .or(d.type_params.as_ref().map(|p| p.time_granularity))
                            .unwrap_or(Grain::Day);
                        Ok(match self.dialect {
                            Dialect::DataFusion => trunc(self.dialect, &col, grain),
                            Dialect::Postgres => {
                                trunc(self.dialect, &format!("CAST({col} AS TIMESTAMP)"), grain)
                            }
                        })
                    }
                }
            }
        }
    }

    fn aggregate(&self, m: &Measure, input: &str) -> String {
        let double = format!("CAST({input} AS DOUBLE PRECISION)");
        match m.agg.value {
            Agg::Sum => format!("CAST(SUM({input}) AS DOUBLE PRECISION)"),
            Agg::Count => format!("COUNT({input})"),
            Agg::CountDistinct => format!("COUNT(DISTINCT {input})"),
            Agg::Average => format!("AVG({double})"),
            Agg::Min => format!("CAST(MIN({input}) AS DOUBLE PRECISION)"),
            Agg::Max => format!("CAST(MAX({input}) AS DOUBLE PRECISION)"),
            Agg::SumBoolean => format!("CAST(SUM(CAST({input} AS INTEGER)) AS BIGINT)"),
            Agg::Median => format!("percentile_cont(0.5) WITHIN GROUP (ORDER BY {double})"),
            Agg::Percentile => {
                let params = m.agg_params.as_ref();
                let p = params
                    .and_then(|p| p.percentile.as_ref())
                    .map_or(0.5, |p| p.value);
                let discrete = params.is_some_and(|p| p.use_discrete_percentile);
                match (discrete, self.dialect) {
                    (false, _) => {
                        format!("percentile_cont({p:?}) WITHIN GROUP (ORDER BY {double})")
                    }
                    (true, Dialect::Postgres) => {
                        format!("percentile_disc({p:?}) WITHIN GROUP (ORDER BY {double})")
                    }
                    // DataFusion has no percentile_disc: the first value whose cumulative
                    // share reaches p, from the sorted non-NULL values.
                    (true, Dialect::DataFusion) => format!(
                        "array_element(array_agg({double} ORDER BY {double}) FILTER (WHERE {input} IS NOT NULL), \
                         CAST(greatest(ceil({p:?} * COUNT({input})), 1) AS BIGINT))"
                    ),
                }
            }
        }
    }
}

/// The row sources of a CTE: the measure's model (`s0`) and the models joined for
/// dimensions, each once per distinct join path.
struct Joins<'p> {
    sources: Vec<Source<'p>>,
}

struct Source<'p> {
    model: usize,
    /// The join path from s0 that reaches it.
    path: Vec<(usize, &'p str)>,
    /// (parent alias, entity) for joined sources.
    via: Option<(usize, &'p str)>,
}

impl<'p> Joins<'p> {
    fn new(base: usize) -> Joins<'p> {
        Joins {
            sources: vec![Source {
                model: base,
                path: Vec::new(),
                via: None,
            }],
        }
    }

    /// The alias number of the source reached by `path`, joining what is missing.
    fn alias_for(&mut self, graph: &SemanticGraph<'p>, path: &[(usize, &'p str)]) -> usize {
        let mut parent = 0;
        for depth in 1..=path.len() {
            let prefix = &path[..depth];
            if let Some(i) = self.sources.iter().position(|s| s.path == prefix) {
                parent = i;
                continue;
            }
            let (_, entity) = prefix[depth - 1];
            // `reach` already checked that the entity has an owner.
            let target = graph.owner(entity).unwrap_or(0);
            self.sources.push(Source {
                model: target,
                path: prefix.to_vec(),
                via: Some((parent, entity)),
            });
            parent = self.sources.len() - 1;
        }
        parent
    }
}

fn where_clause(filter: &Option<String>) -> String {
    match filter {
        Some(f) => format!("\n  WHERE {f}"),
        None => String::new(),
    }
}

/// A YAML `expr`: a plain column name is quoted; anything else is the project's own SQL
/// (written by the project's authors, like model SQL) and used as it is, in parentheses.
fn column_expr(expr: &str) -> String {
    let plain = !expr.is_empty()
        && expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !expr.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("\"__model\".{}", quote_ident(expr))
    } else {
        format!("({expr})")
    }
}

/// The first day of the period holding `t`, as a DATE: `CAST(date_trunc('month', t) AS DATE)`
/// in Postgres; on DataFusion, ebb's `ebb_period_start('month', t)`, which gives the same
/// dates several times faster (see `ebb_warehouse::period`).
fn trunc(dialect: Dialect, t: &str, grain: Grain) -> String {
    match dialect {
        Dialect::Postgres => format!("CAST(date_trunc('{}', {t}) AS DATE)", grain_name(grain)),
        Dialect::DataFusion => format!(
            "{}('{}', {t})",
            ebb_warehouse::period::NAME,
            grain_name(grain)
        ),
    }
}

/// `INTERVAL '3 month'` (weeks as days, quarters as months: both engines read those).
fn interval(n: u32, grain: Grain) -> String {
    let (n, unit) = match grain {
        Grain::Day => (n, "day"),
        Grain::Week => (n * 7, "day"),
        Grain::Month => (n, "month"),
        Grain::Quarter => (n * 3, "month"),
        Grain::Year => (n, "year"),
    };
    format!("INTERVAL '{n} {unit}'")
}

/// The SQL type of a measure's aggregated value.
fn value_type(agg: Agg) -> &'static str {
    match agg {
        Agg::Count | Agg::CountDistinct | Agg::SumBoolean => "BIGINT",
        _ => "DOUBLE PRECISION",
    }
}
