//! Column tests as SQL: each test is a query for the rows that fail it, so the count and a
//! few samples come from the same statement, inside the warehouse.

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use ebb_core::config::model::{ColumnTest, ref_target};
use ebb_core::project::Model;
use ebb_warehouse::{AnyWarehouse, Warehouse, quote_ident};
use futures::TryStreamExt;

use crate::EngineError;

/// How many failing rows a test shows.
pub const SAMPLE_ROWS: usize = 5;

/// One declared test on one column.
#[derive(Debug, Clone)]
pub struct TestSpec {
    pub model: String,
    pub column: String,
    pub test: ColumnTest,
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub spec: TestSpec,
    /// Rows that fail (for `unique`, values that occur more than once).
    pub failures: u64,
    /// Up to [`SAMPLE_ROWS`] failing rows.
    pub sample: Vec<RecordBatch>,
    /// The query that finds the failing rows, to run by hand.
    pub sql: String,
}

impl TestSpec {
    /// `unique`, `accepted_values`, ... as a short label.
    pub fn name(&self) -> String {
        match &self.test {
            ColumnTest::NotNull => "not_null".into(),
            ColumnTest::Unique => "unique".into(),
            ColumnTest::AcceptedValues { values } => {
                format!("accepted_values [{}]", values.join(", "))
            }
            ColumnTest::Relationships { to, field } => {
                format!("relationships -> {}.{field}", ref_target(to))
            }
        }
    }

    /// The model a `relationships` test points at.
    pub fn relationship_target(&self) -> Option<String> {
        match &self.test {
            ColumnTest::Relationships { to, .. } => Some(ref_target(to).to_string()),
            _ => None,
        }
    }

    /// A query returning the rows that fail the test, reading the model from `relation` and
    /// a relationship's target from `target`.
    pub fn failing_rows_sql(&self, relation: &str, target: Option<&str>) -> String {
        let col = quote_ident(&self.column);
        match &self.test {
            ColumnTest::NotNull => format!("select * from {relation} as m where m.{col} is null"),
            ColumnTest::Unique => format!(
                "select m.{col}, count(*) as occurrences from {relation} as m \
                 where m.{col} is not null group by m.{col} having count(*) > 1"
            ),
            ColumnTest::AcceptedValues { values } => {
                let list = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "select m.{col} from {relation} as m \
                     where m.{col} is not null and cast(m.{col} as varchar) not in ({list})"
                )
            }
            ColumnTest::Relationships { field, .. } => {
                let field = quote_ident(field);
                let target = target.unwrap_or("(select 1) as missing");
                format!(
                    "select m.{col} from {relation} as m \
                     left join {target} as p on m.{col} = p.{field} \
                     where m.{col} is not null and p.{field} is null"
                )
            }
        }
    }
}

/// Every test declared on a model's columns, in the order they are written.
pub fn specs(model: &Model) -> Vec<TestSpec> {
    model
        .config
        .columns
        .iter()
        .flat_map(|c| {
            c.tests.iter().map(|t| TestSpec {
                model: model.name.clone(),
                column: c.name.value.clone(),
                test: t.value.clone(),
            })
        })
        .collect()
}

/// Counts the failing rows and fetches a few.
pub async fn run(
    warehouse: &AnyWarehouse,
    spec: TestSpec,
    failing: &str,
) -> Result<TestOutcome, EngineError> {
    let model = spec.model.clone();
    let count_sql =
        format!("select cast(count(*) as bigint) as failures from (\n{failing}\n) as f");
    let batches: Vec<RecordBatch> = warehouse
        .query(&count_sql)
        .await
        .map_err(|e| EngineError::model(&model, e))?
        .try_collect()
        .await
        .map_err(|e| EngineError::model(&model, e.into()))?;
    let failures = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
        .filter(|a| !a.is_empty() && !a.is_null(0))
        .map_or(0, |a| a.value(0).max(0) as u64);
    let sample = if failures > 0 {
        warehouse
            .query(&format!("{failing}\nlimit {SAMPLE_ROWS}"))
            .await
            .map_err(|e| EngineError::model(&model, e))?
            .try_collect()
            .await
            .map_err(|e| EngineError::model(&model, e.into()))?
    } else {
        Vec::new()
    };
    Ok(TestOutcome {
        spec,
        failures,
        sample,
        sql: failing.to_string(),
    })
}
