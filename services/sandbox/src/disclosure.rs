//! Disclosure control (数据可用不可见): what may leave the sandbox is decided on DataFusion's
//! logical plan, never by reading the SQL text.
//!
//! A plan may leave when
//! - it is a query (no DDL, DML, COPY or statements: nothing writes, reads files or the network);
//! - above its one aggregate there are only projections of the aggregate's columns, HAVING
//!   filters, sorts and limits: every output column is a group key or an aggregate;
//! - every aggregate is one of COUNT, SUM, AVG and the variances and standard deviations; MIN, MAX,
//!   medians and percentiles only on fields that hold no personal information;
//! - every filter below the aggregate (WHERE, a join's condition, a subquery's) tests only
//!   columns the aggregate groups by, so that each answer is a set of whole groups: two filters
//!   cannot carve out sets that differ by one record;
//! - no HAVING tests an aggregate's value (a threshold asked again and again finds it exactly);
//!
//! and then every group of fewer than `k` records is suppressed (the answer says how many were),
//! and every released COUNT, SUM, AVG, variance and deviation carries Laplace noise scaled to
//! what one record can change it by, divided by the query's ε. Suppression alone cannot stop
//! differencing: the total of a district minus its released age groups is the one suppressed
//! person. Noise can: the difference of two noisy answers is noise of one person's size. The
//! noise is seeded by the grant's secret, the plan and the group, so asking the same again gives
//! the same answer and cannot be averaged away; the host charges each query's ε to the grant's
//! budget. The controlled plan adds a hidden COUNT(*) (the group's size) to the aggregate.
//!
//! A workspace table (`CREATE TABLE workspace.<name> AS SELECT …`) is row-level work the operator
//! kept inside: it may already be filtered to a few people, or hold one person's row many times,
//! where the rules above cannot see. Over such tables `k` counts the table's rows, and what
//! protects a person is the noise and the grant's budget; a derived table that read personal
//! information counts all its columns as personal, so no MIN or MAX of it leaves.

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::functions::expr_fn::abs;
use datafusion::functions_aggregate::expr_fn::{count, max};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};

/// The hidden column of every controlled aggregate: how many records a group stands for.
pub const GROUP_SIZE: &str = "__pdp_group_size";

/// Hidden columns of the groups: the largest magnitude of each noised argument in the group.
const BOUND: &str = "__pdp_bound_";

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
    /// The privacy loss one query may spend: smaller is noisier.
    pub epsilon: f64,
}

/// How a released aggregate is noised: by what one record can change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// By one.
    Count,
    /// By the largest magnitude of its argument.
    Sum,
    /// By twice that over the group's size.
    Avg,
    /// By its square over the group's size.
    Variance,
    /// By it over the square root of the group's size.
    Deviation,
}

/// An output column that leaves noised.
#[derive(Debug, Clone)]
pub struct Noised {
    /// Its name in the answer.
    pub column: String,
    pub kind: NoiseKind,
    /// Which column of the bounds plan holds its argument's largest magnitude (not for COUNT).
    pub bound: Option<usize>,
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
    #[error(
        "HAVING tests `{0}`, an aggregate's value: asked with one threshold after another it \
         would reveal the value exactly; filter the answer yourself"
    )]
    HavingOnAggregate(String),
}

/// A plan that passed: the groups (the query's aggregate with each group's size and, per noised
/// argument, its largest magnitude); what is released of them (with the group size as a last,
/// hidden column), what counts the suppressed ones, which columns leave noised, and what finds
/// the largest magnitude of each noised argument over all groups. The last three read the data
/// only through `groups`: a host may run it once and put its rows in its place.
#[derive(Debug, Clone)]
pub struct Controlled {
    pub groups: LogicalPlan,
    pub released: LogicalPlan,
    pub suppressed: LogicalPlan,
    pub noised: Vec<Noised>,
    pub bounds: Option<LogicalPlan>,
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
            let below = rebuild(&p.input, policy, k)?;
            // The answer's names of the noised columns, and the group size carried along.
            let mut exprs = p.expr.clone();
            let noised = below
                .noised
                .iter()
                .filter_map(|n| {
                    let e = p
                        .expr
                        .iter()
                        .find(|e| source_name(e) == Some(n.column.as_str()))?;
                    Some(Noised {
                        column: output_name(e),
                        ..n.clone()
                    })
                })
                .collect();
            exprs.push(col(GROUP_SIZE));
            let released = LogicalPlanBuilder::from(below.released)
                .project(exprs)
                .and_then(|b| b.build())
                .map_err(|e| Refusal::RowLevel(e.to_string()))?;
            Ok(Controlled {
                released,
                noised,
                ..below
            })
        }
        LogicalPlan::Sort(s) => over(plan, &s.input, policy, k),
        // HAVING on group keys: whole groups in or out. On an aggregate's value: refused.
        LogicalPlan::Filter(f) => {
            let below = rebuild(&f.input, policy, k)?;
            let tested = f.predicate.column_refs();
            if let Some(n) = below
                .noised
                .iter()
                .find(|n| tested.iter().any(|c| c.name == n.column))
            {
                return Err(Refusal::HavingOnAggregate(n.column.clone()));
            }
            over_controlled(plan, below)
        }
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
    over_controlled(node, rebuild(input, policy, k)?)
}

fn over_controlled(node: &LogicalPlan, below: Controlled) -> Result<Controlled, Refusal> {
    let released = node
        .with_new_exprs(node.expressions(), vec![below.released])
        .map_err(|e| Refusal::RowLevel(e.to_string()))?;
    Ok(Controlled { released, ..below })
}

/// The column a projection's expression passes on.
fn source_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Alias(a) => source_name(&a.expr),
        _ => None,
    }
}

fn output_name(e: &Expr) -> String {
    match e {
        Expr::Alias(a) => a.name.clone(),
        Expr::Column(c) => c.name.clone(),
        other => other.schema_name().to_string(),
    }
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
    let mut noised = Vec::new();
    let mut bound_exprs = Vec::new();
    for (i, e) in a.aggr_expr.iter().enumerate() {
        let Some((kind, arg)) = check_aggregate(e, policy)? else {
            continue;
        };
        let column = a.schema.field(a.group_expr.len() + i).name().clone();
        let bound = arg.map(|arg| {
            let magnitude = abs(cast(arg, DataType::Float64));
            bound_exprs.push(max(magnitude).alias(format!("{BOUND}{}", bound_exprs.len())));
            bound_exprs.len() - 1
        });
        noised.push(Noised {
            column,
            kind,
            bound,
        });
    }
    let grouped: BTreeSet<String> = a
        .group_expr
        .iter()
        .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    check_below(&a.input, &grouped)?;

    // One pass over the data: the query's aggregates, the group's size and its bounds.
    let bounds_count = bound_exprs.len();
    let mut aggr_expr = a.aggr_expr.clone();
    aggr_expr.push(count(lit(1)).alias(GROUP_SIZE));
    aggr_expr.extend(bound_exprs);
    let groups = Aggregate::try_new(a.input.clone(), a.group_expr.clone(), aggr_expr)
        .map(LogicalPlan::Aggregate)
        .map_err(|e| Refusal::RowLevel(e.to_string()))?;
    let plan = |p: Result<LogicalPlanBuilder, datafusion::error::DataFusionError>| {
        p.and_then(|b| b.build())
            .map_err(|e| Refusal::RowLevel(e.to_string()))
    };
    // What leaves carries no bound: those are one record's values.
    let shown: Vec<Expr> = groups
        .schema()
        .iter()
        .filter(|(_, f)| !f.name().starts_with(BOUND))
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let large = col(GROUP_SIZE).gt_eq(lit(k as i64));
    let released = plan(
        LogicalPlanBuilder::from(groups.clone())
            .filter(large)
            .and_then(|b| b.project(shown)),
    )?;
    let suppressed = plan(
        LogicalPlanBuilder::from(groups.clone())
            .filter(col(GROUP_SIZE).lt(lit(k as i64)))
            .and_then(|b| b.aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias("suppressed")])),
    )?;
    // The largest over all groups, suppressed ones too, is the largest over the records.
    let bounds = if bounds_count == 0 {
        None
    } else {
        let overall = (0..bounds_count)
            .map(|i| max(col(format!("{BOUND}{i}"))).alias(format!("bound_{i}")))
            .collect::<Vec<_>>();
        Some(plan(
            LogicalPlanBuilder::from(groups.clone()).aggregate(Vec::<Expr>::new(), overall),
        )?)
    };
    Ok(Controlled {
        groups,
        released,
        suppressed,
        noised,
        bounds,
    })
}

/// How one record moves aggregate `name`, and its argument, when it is noised.
fn noise_of(name: &str, args: &[Expr]) -> Option<(NoiseKind, Option<Expr>)> {
    let arg = args.first().cloned();
    let kind = match name {
        "count" => return Some((NoiseKind::Count, None)),
        "sum" => NoiseKind::Sum,
        "avg" | "mean" => NoiseKind::Avg,
        n if n.starts_with("var") => NoiseKind::Variance,
        n if n.starts_with("stddev") => NoiseKind::Deviation,
        _ => return None,
    };
    Some((kind, arg))
}

/// Checks one aggregate; the noise it leaves with, if any.
fn check_aggregate(
    e: &Expr,
    policy: &Policy,
) -> Result<Option<(NoiseKind, Option<Expr>)>, Refusal> {
    let Expr::AggregateFunction(f) = unaliased(e) else {
        return Err(Refusal::NotAggregated(e.schema_name().to_string()));
    };
    let name = f.func.name().to_lowercase();
    if ALWAYS.contains(&name.as_str()) {
        return Ok(noise_of(&name, &f.params.args));
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
        return Ok(None);
    }
    Err(Refusal::AggregateNotAllowed(name))
}

/// Below the aggregate: no second aggregate, and every filter tests group keys only.
fn check_below(input: &LogicalPlan, grouped: &BTreeSet<String>) -> Result<(), Refusal> {
    let ungrouped = |predicate: &Expr| {
        predicate
            .column_refs()
            .into_iter()
            .find(|c| !grouped.contains(&c.name))
            .map(|c| Refusal::FilterNotGrouped(c.name.clone()))
    };
    let mut refusal = None;
    // Subqueries too: a filter inside `IN (SELECT …)` or a join's condition singles out as
    // well as a WHERE does.
    let _ = input.apply_with_subqueries(|node| {
        let found = match node {
            LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => {
                Some(Refusal::NestedAggregate(first_line(node)))
            }
            LogicalPlan::Filter(f) => ungrouped(&f.predicate),
            LogicalPlan::Join(j) => j.filter.as_ref().and_then(ungrouped),
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
