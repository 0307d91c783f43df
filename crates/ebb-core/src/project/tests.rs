//! Loading whole projects from memory: every cross-file check, positive and negative.

use std::path::PathBuf;

use super::{ProjectSource, SourceFile, load};
use crate::Severity;

const EBB_YML: &str = "\
name: shop
warehouses:
  lake: { type: lake, path: data }
sources:
  app:
    tables:
      orders: { path: orders.csv }
      customers: { path: customers.parquet }
destinations:
  hooks:
    type: webhook
    url: http://127.0.0.1:9/hooks
    secret: ${SHOP_SECRET:-whsec_c2VjcmV0}
  crm:
    type: hubspot
    token: ${HUBSPOT_TOKEN:-x}
tenants:
  acme: {}
";

fn project(files: &[(&str, &str)]) -> ProjectSource {
    ProjectSource {
        root: PathBuf::from("/p"),
        files: files
            .iter()
            .map(|(p, t)| SourceFile {
                path: PathBuf::from(p),
                text: t.to_string(),
            })
            .collect(),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// `file:line:col message` for each error, for compact assertions.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let loaded = load(&project(files), &no_env);
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let pos = d
                .pos
                .map(|p| format!(":{}:{}", p.line, p.column))
                .unwrap_or_default();
            format!("{}{pos} {}", d.file.display(), d.message)
        })
        .collect()
}

const ORDERS_SQL: &str = "select * from {{ source('app', 'orders') }}";
const ORDERS_YML: &str = "primary_key: order_id\ncolumns:\n  - name: order_id\n  - name: customer_id\n  - name: total\n  - name: ordered_at\n";

#[test]
fn a_consistent_project_has_no_problems() {
    let sync = "model: orders\ndestination: hooks\ntenant: acme\nmapping:\n  - { from: total, to: amount }\nschedule: { every: 15m }\n";
    let metrics = "\
semantic_models:
  - name: orders
    model: ref('orders')
    defaults: { agg_time_dimension: ordered_at }
    entities: [{ name: order, type: primary, expr: order_id }]
    dimensions: [{ name: ordered_at, type: time, type_params: { time_granularity: day } }]
    measures: [{ name: revenue, agg: sum, expr: total }]
metrics:
  - { name: revenue, type: simple, type_params: { measure: revenue } }
  - name: growth
    type: derived
    type_params:
      expr: revenue - last
      metrics: [revenue, { name: revenue, offset_window: 1 month, alias: last }]
";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("syncs/order_hooks.yml", sync),
        ("metrics/orders.yml", metrics),
    ]);
    assert!(e.is_empty(), "{e:#?}");
}

#[test]
fn syncs_are_checked_against_models_destinations_and_tenants() {
    let sync = "model: order\ndestination: crm\nmapping:\n  - { from: totl, to: amount }\n  - { from: total, to: amount }\n";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("syncs/s.yml", sync),
    ]);
    assert!(
        e.contains(&"syncs/s.yml:1:8 no model named \"order\"".to_string()),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("every sync names its `tenant`")),
        "{e:#?}"
    );
    assert!(e.iter().any(|m| m.contains("needs `match:`")), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("needs `object:`")), "{e:#?}");
    assert!(
        e.contains(
            &"syncs/s.yml:5:24 field \"amount\" is mapped twice (first at line 4)".to_string()
        ),
        "{e:#?}"
    );

    let sync = "model: orders\ndestination: hooks\ntenant: acme\nmapping:\n  - { from: totl, to: amount }\n";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("syncs/s.yml", sync),
    ]);
    assert_eq!(
        e,
        vec!["syncs/s.yml:5:13 model \"orders\" has no column \"totl\"".to_string()]
    );
}

#[test]
fn sql_templates_are_checked() {
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        (
            "models/a.sql",
            "select 1 from {{ source('ap', 'orders') }}\njoin {{ source('app', 'order') }}\n{{ config(x=1) }}",
        ),
    ]);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("models/a.sql:1:15 source('ap', 'orders'): no source named \"ap\""));
    assert!(e[1].starts_with(
        "models/a.sql:2:6 source('app', 'order'): source \"app\" has no table \"order\""
    ));
    assert!(e[2].starts_with("models/a.sql:3:1 `{{ config(x=1) }}` is not understood"));
}

#[test]
fn a_yml_without_sql_and_unknown_keys_in_nested_places() {
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/ghost.yml", "description: no sql\n"),
        ("models/orders.sql", ORDERS_SQL),
        (
            "models/orders.yml",
            "primary_key: order_id\ncolumns:\n  - name: order_id\n    tets: [unique]\n",
        ),
    ]);
    assert!(
        e.iter()
            .any(|m| m.starts_with("models/ghost.yml no model SQL beside this file")),
        "{e:#?}"
    );
    assert!(
        e.contains(&"models/orders.yml:4:5 unknown field \"tets\"".to_string()),
        "{e:#?}"
    );
}

#[test]
fn ebb_yml_mistakes_are_all_reported() {
    let yml = "\
name: My Shop
version: 2
warehouses:
  lake: { type: lake, path: data }
  pg: { type: postgress, url: x }
default_warehouse: lak
sources:
  app:
    warehouse: lake
    tables:
      orders: {}
      odd: { path: orders.txt }
destinations:
  hooks: { type: webhook, url: ftp://x, secret: nope }
";
    let e = errors(&[("ebb.yml", yml)]);
    let expect = [
        "ebb.yml:1:7 project name \"My Shop\" must be lowercase letters, digits and _",
        "ebb.yml:2:10 project format version 2 is not known to this ebb",
        "ebb.yml:5:15 unknown value \"postgress\"",
        "ebb.yml:6:20 no warehouse named \"lak\"",
        "ebb.yml:11:7 lake table \"app.orders\" needs a `path`",
        "ebb.yml:12:20 cannot tell the format of \"orders.txt\" from its extension",
        "ebb.yml:14:10 destination \"hooks\": \"ftp://x\" is not an http(s) URL",
        "ebb.yml:14:10 destination \"hooks\": a webhook secret is `whsec_` followed by base64",
    ];
    for x in expect {
        assert!(e.contains(&x.to_string()), "missing {x:?} in {e:#?}");
    }
    assert_eq!(e.len(), expect.len(), "{e:#?}");
}

#[test]
fn metric_definitions_are_checked() {
    let metrics = "\
semantic_models:
  - name: orders
    model: orders
    entities: [{ name: order, type: primary, expr: order_id }, { name: o2, type: primary, expr: order_id }]
    dimensions:
      - { name: ordered_at, type: time }
      - { name: status, type: categorical }
    measures:
      - { name: revenue, agg: sum, expr: totl }
      - { name: p90, agg: percentile, expr: total, agg_time_dimension: ordered_at }
metrics:
  - { name: rev, type: simple, type_params: { measure: revenu } }
  - { name: ratio, type: ratio, type_params: { numerator: rev } }
  - { name: d, type: derived, type_params: { expr: rev * x, metrics: [rev] } }
  - { name: c, type: cumulative, type_params: { measure: revenue, window: 3 fortnights } }
  - { name: f, type: simple, type_params: { measure: revenue }, filter: \"{{ Dimension('order__state') }} = 'x'\" }
  - { name: loop1, type: derived, type_params: { expr: loop2, metrics: [loop2] } }
  - { name: loop2, type: derived, type_params: { expr: loop1, metrics: [loop1] } }
";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("metrics/m.yml", metrics),
    ]);
    let expect = [
        "2 primary entities",
        "time dimension \"ordered_at\" needs a granularity",
        "model \"orders\" has no column \"totl\"",
        "measure \"revenue\" has no time dimension",
        "percentile measure \"p90\" needs",
        "no measure named \"revenu\"",
        "needs `type_params.denominator`",
        "`x` in expr is not one of its `metrics`",
        "\"3 fortnights\" is not a window",
        "filter uses unknown dimension \"state\"",
        "metrics depend on each other in a cycle: loop1 -> loop2 -> loop1",
    ];
    for x in expect {
        assert!(e.iter().any(|m| m.contains(x)), "missing {x:?} in {e:#?}");
    }
}

#[test]
fn identity_definitions_are_checked() {
    let identity = "\
sources:
  - model: orders
    key: order_id
    attributes: { email: customer_email, phone: customer_id }
attributes:
  phone: { kind: phone }
rules:
  - { name: r1, exact: [emial] }
  - { name: r2, blocking: [phone], fuzzy: [{ attribute: phone, method: jaro_winkler, threshold: 1.5 }] }
  - { name: r3 }
max_cluster_size: 1
survivorship:
  phone: { rule: source_priority, order: [crm] }
";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("identity/people.yml", identity),
    ]);
    let expect = [
        "identity/people.yml:4:19 \"email\" is not declared under `attributes:`",
        "identity/people.yml:4:26 model \"orders\" has no column \"customer_email\"",
        "identity/people.yml:8:25 \"emial\" is not declared under `attributes:`",
        "identity/people.yml:9:97 threshold 1.5 is outside 0..1",
        "identity/people.yml:10:13 rule \"r3\" compares nothing",
        "identity/people.yml:11:19 max_cluster_size must be at least 2",
        "identity/people.yml:13:43 \"crm\" is not one of this identity's source models",
    ];
    for x in expect {
        assert!(
            e.iter().any(|m| m.starts_with(x)),
            "missing {x:?} in {e:#?}"
        );
    }
}

#[test]
fn environment_variables_fill_values_and_defaults() {
    let env = |name: &str| (name == "SHOP_SECRET").then(|| "whsec_ZnJvbWVudg==".to_string());
    let loaded = load(&project(&[("ebb.yml", EBB_YML)]), &env);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    let config = loaded.project.config.unwrap();
    let hooks = config.destinations.get("hooks").unwrap();
    let crate::config::project::DestinationConfig::Webhook { secret, .. } = &hooks.value else {
        panic!("hooks is a webhook")
    };
    assert_eq!(secret.as_ref().unwrap().expose(), "whsec_ZnJvbWVudg==");
    assert!(
        !format!("{config:?}").contains("ZnJvbWVudg"),
        "Debug output leaks the secret"
    );
}

#[test]
fn sync_schedules_may_not_wait_on_each_other_in_a_cycle() {
    let a = "model: orders\ndestination: hooks\ntenant: acme\nmapping: [{ from: total, to: t }]\nschedule: { after: b }\n";
    let b = "model: orders\ndestination: hooks\ntenant: acme\nmapping: [{ from: total, to: t }]\nschedule: { after: a }\n";
    let c = "model: orders\ndestination: hooks\ntenant: acme\nmapping: [{ from: total, to: t }]\nschedule: { cron: '0 25 * * *', every: 1h }\n";
    let e = errors(&[
        ("ebb.yml", EBB_YML),
        ("models/orders.sql", ORDERS_SQL),
        ("models/orders.yml", ORDERS_YML),
        ("syncs/a.yml", a),
        ("syncs/b.yml", b),
        ("syncs/c.yml", c),
    ]);
    assert!(
        e.contains(
            &"syncs/a.yml:5:20 syncs wait on each other in a cycle: a -> b -> a".to_string()
        ),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("exactly one of `cron`, `every` or `after`")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("syncs/c.yml:5:19 cron hour field \"25\"")),
        "{e:#?}"
    );
}

#[test]
fn metric_syncs_are_checked() {
    let metrics = "\
semantic_models:
  - name: orders
    model: orders
    defaults: { agg_time_dimension: ordered_at }
    entities:
      - { name: order, type: primary, expr: order_id }
      - { name: customer, type: foreign, expr: customer_id }
    dimensions:
      - { name: ordered_at, type: time, type_params: { time_granularity: day } }
    measures:
      - { name: revenue, agg: sum, expr: total }
metrics:
  - { name: revenue, type: simple, type_params: { measure: revenue } }
  - { name: customer, type: simple, type_params: { measure: revenue } }
";
    let files = |sync: &'static str| {
        errors(&[
            ("ebb.yml", EBB_YML),
            ("models/orders.sql", ORDERS_SQL),
            ("models/orders.yml", ORDERS_YML),
            ("metrics/m.yml", metrics),
            ("syncs/revenue.yml", sync),
        ])
    };
    let good = "metric: { name: revenue, entity: customer }\ndestination: hooks\ntenant: acme\n\
                mapping:\n  - { from: customer, to: customer_id }\n  - { from: revenue, to: ltv }\n";
    assert_eq!(files(good), Vec::<String>::new());
    // The key may be named, as long as it is the entity.
    let keyed = "metric: { name: revenue, entity: customer }\nprimary_key: customer\n\
                 destination: hooks\ntenant: acme\nmapping:\n  - { from: revenue, to: ltv }\n";
    assert_eq!(files(keyed), Vec::<String>::new());

    let unknown = "metric: { name: revenu, entity: custmer }\ndestination: hooks\ntenant: acme\n\
                   mapping:\n  - { from: revenu, to: ltv }\n";
    let e = files(unknown);
    assert!(
        e.iter()
            .any(|m| m.starts_with("syncs/revenue.yml:1:17 no metric named \"revenu\"")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("syncs/revenue.yml:1:33 no entity named \"custmer\"")),
        "{e:#?}"
    );

    let columns = "metric: { name: revenue, entity: customer }\nprimary_key: order_id\n\
                   destination: hooks\ntenant: acme\nmatch: { source: customer_id, destination: id }\n\
                   mapping:\n  - { from: revenu, to: ltv }\n  - { from: customer, to: c }\n";
    let e = files(columns);
    let expect = [
        "syncs/revenue.yml:2:14 a metric sync is keyed by its entity \"customer\", not \"order_id\"",
        "syncs/revenue.yml:5:18 the rows of metric \"revenue\" per customer have no column \"customer_id\"",
        "syncs/revenue.yml:7:13 the rows of metric \"revenue\" per customer have no column \"revenu\"",
    ];
    assert_eq!(e, expect, "{e:#?}");
    let loaded = load(
        &project(&[
            ("ebb.yml", EBB_YML),
            ("models/orders.sql", ORDERS_SQL),
            ("models/orders.yml", ORDERS_YML),
            ("metrics/m.yml", metrics),
            ("syncs/revenue.yml", columns),
        ]),
        &no_env,
    );
    let revenu = loaded
        .diagnostics
        .iter()
        .find(|d| d.message.contains("\"revenu\""))
        .unwrap();
    let help = revenu.help.as_deref().unwrap_or_default();
    assert!(help.starts_with("did you mean \"revenue\"?"), "{help}");
    assert!(help.contains("one row per customer"), "{help}");

    let clash = "metric: { name: customer, entity: customer }\ndestination: hooks\ntenant: acme\n\
                 mapping:\n  - { from: customer, to: c }\n";
    let e = files(clash);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("has the name of the entity it is grouped by"),
        "{e:#?}"
    );
}
