//! Disclosure control (数据可用不可见): what may leave the sandbox is decided on DataFusion's
//! logical plan, never by reading the SQL text.
//!
//! A plan may leave when
//! - it is a query (no DDL, DML, COPY or statements: nothing writes, reads files or the network);
//! - above its one aggregate there are only projections of the aggregate's columns, HAVING
//!   filters, sorts and limits: every output column is a group key or an aggregate;
//! - every aggregate is one of COUNT, SUM, AVG and the variances and standard deviations; MIN, MAX,
//!   medians and percentiles only on fields that hold no personal information;
//! - every filter below the aggregate tests only columns the aggregate groups by, so that each
//!   answer is a set of whole groups (the defence against differencing: two filters cannot carve
//!   out sets that differ by one record without that record's group showing, and it is
//!   suppressed);
//!
//! and then every group of fewer than `k` records is suppressed from the answer, and the answer
//! says how many were. The controlled plan adds a hidden COUNT(*) to the aggregate for that.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, col, lit};

/// The hidden column of every controlled aggregate: how many records a group stands for.
pub const GROUP_SIZE: &str = "__pdp_group_size";

/// The smallest `k` a tenant may set (the default is 10).
pub const MIN_K: u64 = 5;

/// Aggregates that may leave whatever they summarize.
const ALWAYS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "var",
    "var_samp",
    "var_pop",
    "variance",
    "variance_samp",
    "variance_pop",
    "stddev",
    "stddev_samp",
    "stddev_pop",
];

/// Aggregates that return one record's value: refused on personal information.
const ORDER_STATISTICS: &[&str] = &[
    "min",
    "max",
    "median",
    "approx_median",
    "percentile_cont",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
];

/// What the rules know of the tables a query reads.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The smallest group that may leave.
    pub k: u64,
    /// Fields that hold personal information (个人信息), by name.
    pub personal: BTreeSet<String>,
}

/// Why a plan may not leave: the column or group and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only queries run here: {0} is refused (nothing writes, reads files or the network)")]
    NotAQuery(String),
    #[error(
        "the answer is not an aggregate: `{0}` would carry rows out; only group keys and \
         aggregates leave the sandbox (第二十二条)"
    )]
    RowLevel(String),
    #[error("output column `{0}` is neither a group key nor an aggregate")]
    NotAggregated(String),
    #[error("aggregate `{0}` is not allowed: COUNT, SUM, AVG, variances and deviations only")]
    AggregateNotAllowed(String),
    #[error(
        "`{function}` of `{field}` returns one record's value, and `{field}` is personal \
         information: use COUNT, SUM or AVG"
    )]
    OrderStatisticOfPersonal { function: String, field: String },
    #[error(
        "the filter on `{0}` is not a group key: filter only on what the query groups by, so that \
         each answer is made of whole groups (the defence against differencing)"
    )]
    FilterNotGrouped(String),
    #[error("{0}: an aggregate of aggregates or a second aggregate is not controlled here")]
    NestedAggregate(String),
}

/// A plan that passed: what is released, and what counts the suppressed groups.
#[derive(Debug, Clone)]
pub struct Controlled {
    pub released: LogicalPlan,
    pub suppressed: LogicalPlan,
}

/// Checks `plan` against the rules and returns its controlled form.
pub fn control(plan: &LogicalPlan, policy: &Policy) -> Result<Controlled, Refusal> {
    match plan {
        LogicalPlan::Ddl(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::DescribeTable(_)
        | LogicalPlan::Extension(_) => return Err(Refusal::NotAQuery(plan.display().to_string())),
        _ => {}
    }
    if !aggregates(plan) {
        let columns: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        return Err(Refusal::RowLevel(columns.join(", ")));
    }
    let k = policy.k.max(MIN_K);
    rebuild(plan, policy, k)
}

/// Whether the output is an aggregate's: below the nodes that only shape an answer (projections,
/// HAVING, sorts, limits, aliases) there is an aggregate.
fn aggregates(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(p) => aggregates(&p.input),
        LogicalPlan::Filter(f) => aggregates(&f.input),
        LogicalPlan::Sort(s) => aggregates(&s.input),
        LogicalPlan::Limit(l) => aggregates(&l.input),
        LogicalPlan::SubqueryAlias(a) => aggregates(&a.input),
        _ => false,
    }
}

/// Walks down from the output through projections, sorts and limits to the aggregate, and
/// rebuilds the same nodes over the controlled aggregate.
fn rebuild(plan: &LogicalPlan, policy: &Policy, k: u64) -> Result<Controlled, Refusal> {
    match plan {
        LogicalPlan::Aggregate(aggregate) => controlled_aggregate(aggregate, policy, k),
        LogicalPlan::Projection(p) => {
            for e in &p.expr {
                if !is_column(e) {
                    return Err(Refusal::NotAggregated(e.schema_name().to_string()));
                }
            }
            over(plan, &p.input, policy, k)
        }
        LogicalPlan::Sort(s) => over(plan, &s.input, policy, k),
        // HAVING: a test of the aggregate's own columns, whole groups in or out.
        LogicalPlan::Filter(f) => over(plan, &f.input, policy, k),
        LogicalPlan::Limit(l) => over(plan, &l.input, policy, k),
        LogicalPlan::SubqueryAlias(a) => over(plan, &a.input, policy, k),
        other => Err(Refusal::RowLevel(first_line(other))),
    }
}

/// `node` rebuilt over the controlled form of its `input`.
fn over(
    node: &LogicalPlan,
    input: &LogicalPlan,
    policy: &Policy,
    k: u64,
) -> Result<Controlled, Refusal> {
    let below = rebuild(input, policy, k)?;
    let released = node
        .with_new_exprs(node.expressions(), vec![below.released])
        .map_err(|e| Refusal::RowLevel(e.to_string()))?;
    Ok(Controlled {
        released,
        suppressed: below.suppressed,
    })
}

fn first_line(plan: &LogicalPlan) -> String {
    plan.display().to_string()
}

/// A column, or a column under an alias: what a projection above the aggregate may hold.
fn is_column(e: &Expr) -> bool {
    match e {
        Expr::Column(_) => true,
        Expr::Alias(a) => is_column(&a.expr),
        _ => false,
    }
}

fn unaliased(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unaliased(&a.expr),
        other => other,
    }
}

fn controlled_aggregate(a: &Aggregate, policy: &Policy, k: u64) -> Result<Controlled, Refusal> {
    for e in &a.aggr_expr {
        check_aggregate(e, policy)?;
    }
    let grouped: BTreeSet<String> = a
        .group_expr
        .iter()
        .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    check_below(&a.input, &grouped)?;

    let mut aggr_expr = a.aggr_expr.clone();
    aggr_expr.push(count(lit(1)).alias(GROUP_SIZE));
    let counted = Aggregate::try_new(a.input.clone(), a.group_expr.clone(), aggr_expr)
        .map(LogicalPlan::Aggregate)
        .map_err(|e| Refusal::RowLevel(e.to_string()))?;
    let plan = |p: Result<LogicalPlanBuilder, datafusion::error::DataFusionError>| {
        p.and_then(|b| b.build())
            .map_err(|e| Refusal::RowLevel(e.to_string()))
    };
    let large = col(GROUP_SIZE).gt_eq(lit(k as i64));
    let released = plan(LogicalPlanBuilder::from(counted.clone()).filter(large))?;
    let suppressed = plan(
        LogicalPlanBuilder::from(counted)
            .filter(col(GROUP_SIZE).lt(lit(k as i64)))
            .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias("suppressed")])),
    )?;
    Ok(Controlled {
        released,
        suppressed,
    })
}

fn check_aggregate(e: &Expr, policy: &Policy) -> Result<(), Refusal> {
    let Expr::AggregateFunction(f) = unaliased(e) else {
        return Err(Refusal::NotAggregated(e.schema_name().to_string()));
    };
    let name = f.func.name().to_lowercase();
    if ALWAYS.contains(&name.as_str()) {
        return Ok(());
    }
    if ORDER_STATISTICS.contains(&name.as_str()) {
        for arg in &f.params.args {
            if let Some(c) = arg
                .column_refs()
                .into_iter()
                .find(|c| policy.personal.contains(&c.name))
            {
                return Err(Refusal::OrderStatisticOfPersonal {
                    function: name,
                    field: c.name.clone(),
                });
            }
        }
        return Ok(());
    }
    Err(Refusal::AggregateNotAllowed(name))
}

/// Below the aggregate: no second aggregate, and every filter tests group keys only.
fn check_below(input: &LogicalPlan, grouped: &BTreeSet<String>) -> Result<(), Refusal> {
    let mut refusal = None;
    let _ = input.apply(|node| {
        let found = match node {
            LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => {
                Some(Refusal::NestedAggregate(first_line(node)))
            }
            LogicalPlan::Filter(f) => f
                .predicate
                .column_refs()
                .into_iter()
                .find(|c| !grouped.contains(&c.name))
                .map(|c| Refusal::FilterNotGrouped(c.name.clone())),
            _ => None,
        };
        match found {
            Some(r) => {
                refusal = Some(r);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    refusal.map_or(Ok(()), Err)
}
