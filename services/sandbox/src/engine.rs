//! The engine: an operator's SQL on DataFusion over the tables its grant names, each showing only
//! the granted fields and the masked ones as keyed digests, controlled before anything leaves,
//! under a memory and a time limit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions::expr_fn::{concat, sha256};
use datafusion::logical_expr::{Expr, cast, ident, lit};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use url::Url;

use crate::disclosure::{self, Policy, Refusal};
use crate::noise::{self, Noise};

/// A table of a grant as the query sees it.
#[derive(Debug, Clone)]
pub struct Table {
    /// The name the SQL uses.
    pub name: String,
    /// Where its Parquet files lie in the store: `tenants/230100/resources/<id>/v3/`.
    pub location: String,
    /// The granted fields: the only columns the query sees.
    pub fields: Vec<String>,
    /// Of those, the ones the query sees as keyed digests only.
    pub masked: Vec<String>,
    /// Of those, the ones that hold personal information.
    pub personal: Vec<String>,
}

/// What one query may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            time: Duration::from_secs(30),
        }
    }
}

/// What leaves: the released groups, how many were suppressed, and what the audit record needs.
#[derive(Debug, Clone)]
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    pub groups: usize,
    pub suppressed: u64,
    /// sha256 of the logical plan as planned from the SQL.
    pub plan_hash: String,
    /// `table.field` of every column the query reads.
    pub fields_touched: Vec<String>,
    /// The privacy loss the answer cost: the query's ε when anything left noised, else 0.
    pub epsilon_spent: f64,
}

/// What one query is held to.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The smallest group that leaves.
    pub k: u64,
    /// The privacy loss the query may spend.
    pub epsilon: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("the query does not plan: {0}")]
    Invalid(String),
    #[error("the query ran past its {0:?} and was cancelled")]
    TimedOut(Duration),
    #[error("the query needs more memory than its limit allows: {0}")]
    TooLarge(String),
    #[error("the engine failed: {0}")]
    Engine(String),
    #[error("the load is refused: {0}")]
    Rejected(String),
}

impl From<DataFusionError> for SandboxError {
    fn from(e: DataFusionError) -> Self {
        // Errors arrive wrapped in context; what went wrong is at the root.
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => Self::TooLarge(m.clone()),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Self::Invalid(e.to_string()),
            _ => Self::Engine(e.to_string()),
        }
    }
}

/// The sandbox over one object store (a directory in dev, S3-compatible in a cluster).
#[derive(Debug, Clone)]
pub struct Sandbox {
    store: Arc<dyn ObjectStore>,
    /// The URL the store is registered under in every session: `sandbox://data/`.
    url: Url,
    limits: Limits,
}

impl Sandbox {
    pub fn new(store: Arc<dyn ObjectStore>, limits: Limits) -> Result<Self, SandboxError> {
        let url = Url::parse("sandbox://data/").map_err(|e| SandboxError::Engine(e.to_string()))?;
        Ok(Self { store, url, limits })
    }

    fn session(&self) -> Result<SessionContext, SandboxError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()?;
        let config = SessionConfig::new().with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(&self.url, self.store.clone());
        Ok(ctx)
    }

    fn path(&self, location: &str) -> String {
        format!("{}{}", self.url, location.trim_start_matches('/'))
    }

    /// Writes `batches` as the Parquet files of `location` (a new version of a resource).
    pub async fn write(
        &self,
        location: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<(), SandboxError> {
        let ctx = self.session()?;
        let df = ctx.read_batches(batches)?;
        df.write_parquet(&self.path(location), DataFrameWriteOptions::new(), None)
            .await?;
        Ok(())
    }

    /// Loads the CSV of `reader` as the Parquet file of `location`, checked against `fields`,
    /// its first data line counted as `first_line`; nothing is visible unless every row fits.
    pub async fn load_csv<R: std::io::Read>(
        &self,
        location: &str,
        fields: &[crate::load::Field],
        reader: R,
        first_line: u64,
    ) -> Result<crate::load::Loaded, SandboxError> {
        crate::load::load_csv(self.store.clone(), location, fields, reader, first_line).await
    }

    /// Removes an object a load wrote (a chunk its load no longer takes).
    pub async fn delete(&self, object: &str) -> Result<(), SandboxError> {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(object);
        self.store
            .delete(&path)
            .await
            .map_err(|e| SandboxError::Engine(e.to_string()))
    }

    /// Registers `tables` as the query sees them: granted fields only, masked ones as digests
    /// keyed with `salt` (the same value groups alike; nobody reads it back).
    async fn register(
        &self,
        ctx: &SessionContext,
        tables: &[Table],
        salt: &str,
    ) -> Result<(), SandboxError> {
        for t in tables {
            let df = ctx
                .read_parquet(self.path(&t.location), ParquetReadOptions::default())
                .await?;
            let columns: Vec<Expr> = t
                .fields
                .iter()
                .map(|f| {
                    if t.masked.contains(f) {
                        let text = cast(ident(f), DataType::Utf8);
                        sha256(concat(vec![lit(salt.to_string()), text])).alias(f)
                    } else {
                        ident(f)
                    }
                })
                .collect();
            ctx.register_table(t.name.as_str(), df.select(columns)?.into_view())?;
        }
        Ok(())
    }

    /// Runs `sql` over `tables`; only what passes disclosure control leaves: groups of at least
    /// `rules.k` records, their aggregates noised for `rules.epsilon`. `secret` is the grant's:
    /// it keys the masks and seeds the noise, and never leaves.
    pub async fn query(
        &self,
        tables: &[Table],
        sql: &str,
        rules: Rules,
        secret: &str,
    ) -> Result<Answer, SandboxError> {
        if !(rules.epsilon.is_finite() && rules.epsilon > 0.0) {
            return Err(SandboxError::Invalid(format!(
                "ε must be a positive number, not {}",
                rules.epsilon
            )));
        }
        let ctx = self.session()?;
        self.register(&ctx, tables, secret).await?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        let personal: BTreeSet<String> = tables
            .iter()
            .flat_map(|t| t.personal.iter().cloned())
            .collect();
        let policy = Policy {
            k: rules.k,
            personal,
            epsilon: rules.epsilon,
        };
        let controlled = disclosure::control(&plan, &policy)?;
        let plan_hash = format!("{:x}", Sha256::digest(plan.display_indent().to_string()));
        let fields_touched = touched(&plan);
        let run = async {
            let released = ctx.execute_logical_plan(controlled.released).await?;
            let released = released.collect().await?;
            let counted = ctx.execute_logical_plan(controlled.suppressed).await?;
            let counted = counted.collect().await?;
            let bounds = match controlled.bounds {
                Some(plan) => ctx.execute_logical_plan(plan).await?.collect().await?,
                None => Vec::new(),
            };
            Ok::<_, DataFusionError>((released, counted, bounds))
        };
        let (exact, counted, bounds) = tokio::time::timeout(self.limits.time, run)
            .await
            .map_err(|_| SandboxError::TimedOut(self.limits.time))??;
        let noise = Noise {
            noised: &controlled.noised,
            bounds: noise::bounds(&bounds)?,
            epsilon: rules.epsilon,
            seed: format!("{secret}/{plan_hash}"),
        };
        let batches = exact
            .iter()
            .map(|b| noise.apply(b))
            .collect::<Result<Vec<_>, _>>()?;
        let suppressed = counted
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .map(|a| a.value(0) as u64)
            })
            .unwrap_or(0);
        Ok(Answer {
            groups: batches.iter().map(RecordBatch::num_rows).sum(),
            batches,
            suppressed,
            plan_hash,
            fields_touched,
            epsilon_spent: if controlled.noised.is_empty() {
                0.0
            } else {
                rules.epsilon
            },
        })
    }
}

/// `table.field` of every column `plan` reads from a table.
fn touched(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut out = BTreeSet::new();
    let _ = plan.apply(|node| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = node {
            for field in scan.projected_schema.fields() {
                out.insert(format!("{}.{}", scan.table_name, field.name()));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.into_iter().collect()
}

/// One value of an answer as text, as the API returns it.
pub fn display(column: &datafusion::arrow::array::ArrayRef, row: usize) -> String {
    datafusion::arrow::util::display::array_value_to_string(column, row).unwrap_or_default()
}
