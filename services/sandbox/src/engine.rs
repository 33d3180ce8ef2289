//! The engine: an operator's SQL on DataFusion over the tables its grant names, each showing only
//! the granted fields and the masked ones as keyed digests, controlled before anything leaves,
//! under a memory and a time limit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::catalog::{MemTable, MemorySchemaProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, TableReference};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::functions::expr_fn::{concat, sha256};
use datafusion::logical_expr::{
    DdlStatement, Expr, LogicalPlan, LogicalPlanBuilder, cast, ident, lit,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use url::Url;

use crate::disclosure::{self, Policy, Refusal};
use crate::noise::{self, Noise};

/// The schema of a grant's workspace tables: `workspace.<name>`.
pub const WORKSPACE: &str = "workspace";

/// What a workspace table's name may be: it is a path in the store and an identifier in SQL, so
/// 1 to 63 lower-case letters, digits and `_`, starting with a letter — never `/` or `..`.
pub const TABLE_NAME_RULE: &str =
    "1 to 63 lower-case letters, digits and `_`, starting with a letter";

/// Whether `name` keeps [`TABLE_NAME_RULE`].
pub fn is_table_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A table of a grant as the query sees it.
#[derive(Debug, Clone)]
pub struct Table {
    /// The name the SQL uses: a resource's id, or `workspace.<name>`.
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

/// A table a statement kept in the workspace (`CREATE TABLE workspace.<name> AS SELECT …`):
/// row level, never read from outside. What the caller learns is its name and columns, never a
/// count: how many rows a filter kept would tell of the records it singled out.
#[derive(Debug, Clone)]
pub struct Derived {
    pub name: String,
    /// Where its Parquet lies.
    pub location: String,
    /// Its columns and their types.
    pub columns: Vec<(String, String)>,
    /// The tables it read, as the statement names them (`workspace.<name>` for the workspace's).
    pub inputs: Vec<String>,
    /// Whether it read a field that holds personal information.
    pub personal: bool,
    /// Rows written: for the audit record only.
    pub rows: u64,
    pub plan_hash: String,
    pub fields_touched: Vec<String>,
}

/// What a statement did.
#[derive(Debug, Clone)]
pub enum Outcome {
    Answer(Answer),
    Derived(Derived),
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
    /// The query failed while it ran over the data. What failed is not said: an engine's
    /// message can quote a value (a cast that failed), and the value would leave with it.
    #[error(
        "the query failed while it ran over the data (a value that does not convert, a division \
         by zero…); the engine's message is not shown, as it may quote a record's value"
    )]
    Failed,
    #[error("the load is refused: {0}")]
    Rejected(String),
    /// The engine could not be reached (a Ballista cluster down): nothing was read.
    #[error(
        "the sandbox's compute cluster could not be reached ({0}); nothing was read, try again"
    )]
    Unreachable(String),
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

/// The URL the store is registered under in every session, here and on a Ballista cluster's
/// members, so that a plan's paths mean the same store everywhere.
pub(crate) fn store_url() -> Url {
    Url::parse("sandbox://data/").expect("a constant URL")
}

/// Where a statement is planned and its reading of the data runs: in this process
/// ([`InProcess`]), or on a Ballista cluster ([`crate::ballista::Ballista`]). Disclosure control
/// and what is computed from the groups always run here.
pub trait Engine: std::fmt::Debug + Send + Sync {
    /// The context for `state`: the session with the store registered and the query's memory
    /// limit.
    fn context(&self, state: SessionState) -> Result<SessionContext, SandboxError>;

    /// Whether `error`, met while the data was read, says the engine was out of reach (and why)
    /// rather than that the statement failed over the data.
    fn unreachable(&self, error: &DataFusionError) -> Option<String> {
        let _ = error;
        None
    }
}

/// DataFusion in this process: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Engine for InProcess {
    fn context(&self, state: SessionState) -> Result<SessionContext, SandboxError> {
        Ok(SessionContext::new_with_state(state))
    }
}

/// One statement's sessions: `reading` plans it and reads the data (on the engine); `local`
/// computes in this process what leaves from rows already held, and writes derivations.
struct Sessions {
    reading: SessionContext,
    local: SessionContext,
}

/// The sandbox over one object store (a directory in dev, S3-compatible in a cluster).
#[derive(Debug, Clone)]
pub struct Sandbox {
    store: Arc<dyn ObjectStore>,
    limits: Limits,
    engine: Arc<dyn Engine>,
    /// What one grant's workspace may hold in the store, in bytes.
    workspace_quota: u64,
}

/// What a grant's workspace holds at most unless the deployment says otherwise: 10 GiB.
pub const WORKSPACE_QUOTA: u64 = 10 << 30;

impl Sandbox {
    /// The sandbox over `store`, its queries in this process.
    pub fn new(store: Arc<dyn ObjectStore>, limits: Limits) -> Result<Self, SandboxError> {
        Ok(Self {
            store,
            limits,
            engine: Arc::new(InProcess),
            workspace_quota: WORKSPACE_QUOTA,
        })
    }

    /// The same sandbox, a grant's workspace holding at most `bytes`.
    pub fn with_workspace_quota(self, bytes: u64) -> Self {
        Self {
            workspace_quota: bytes,
            ..self
        }
    }

    /// What one grant's workspace may hold, in bytes.
    pub fn workspace_quota(&self) -> u64 {
        self.workspace_quota
    }

    /// The bytes stored under `location` (a table's directory, or one object).
    pub async fn size(&self, location: &str) -> Result<u64, SandboxError> {
        Ok(self.objects(location).await?.iter().map(|o| o.size).sum())
    }

    /// Every object under `location` with its size and SHA-256 (hex), read whole: what a
    /// destruction record lists before the objects go.
    pub async fn inventory(&self, location: &str) -> Result<Vec<StoredObject>, SandboxError> {
        use object_store::ObjectStoreExt;
        let mut out = Vec::new();
        for meta in self.objects(location).await? {
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(|e| SandboxError::Engine(e.to_string()))?
                .bytes()
                .await
                .map_err(|e| SandboxError::Engine(e.to_string()))?;
            let digest = Sha256::digest(&bytes);
            out.push(StoredObject {
                location: meta.location.to_string(),
                size: meta.size,
                sha256: hex::encode(digest),
            });
        }
        Ok(out)
    }

    /// Every object under `location`.
    async fn objects(&self, location: &str) -> Result<Vec<object_store::ObjectMeta>, SandboxError> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(location.trim_end_matches('/'));
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| SandboxError::Engine(e.to_string()))
    }

    /// The same sandbox, its queries' reading of the data on `engine`.
    pub fn with_engine(self, engine: Arc<dyn Engine>) -> Self {
        Self { engine, ..self }
    }

    fn session(&self) -> Result<Sessions, SandboxError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .build_arc()?;
        runtime.register_object_store(&store_url(), self.store.clone());
        let config = SessionConfig::new().with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let local = SessionContext::new_with_state(state.clone());
        let reading = self.engine.context(state)?;
        let catalog = reading
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        reading
            .catalog(&catalog)
            .ok_or_else(|| SandboxError::Engine("no default catalog".into()))?
            .register_schema(WORKSPACE, Arc::new(MemorySchemaProvider::new()))?;
        Ok(Sessions { reading, local })
    }

    fn path(&self, location: &str) -> String {
        format!("{}{}", store_url(), location.trim_start_matches('/'))
    }

    /// Which fields of `tables` `plan` reads, subqueries included. The planner inlines each
    /// table's view, so a scan is known by its files, not its name; the plan is optimized first,
    /// so that a scan lists only the columns the statement needs.
    fn reads(&self, ctx: &SessionContext, plan: &LogicalPlan, tables: &[Table]) -> Reads {
        use datafusion::common::tree_node::TreeNodeRecursion;
        use datafusion::datasource::listing::ListingTable;
        use datafusion::datasource::source_as_provider;
        let optimized = ctx.state().optimize(plan).unwrap_or_else(|_| plan.clone());
        let located: Vec<(String, &Table)> = tables
            .iter()
            .map(|t| (self.path(&t.location).trim_end_matches('/').to_string(), t))
            .collect();
        let mut out = Reads::new();
        let _ = optimized.apply_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let Ok(provider) = source_as_provider(&scan.source) else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let Some(listing) = provider.downcast_ref::<ListingTable>() else {
                return Ok(TreeNodeRecursion::Continue);
            };
            for url in listing.table_paths() {
                let url = url.as_str().trim_end_matches('/');
                if let Some((_, t)) = located.iter().find(|(at, _)| at == url) {
                    out.entry(t.name.clone()).or_default().extend(
                        scan.projected_schema
                            .fields()
                            .iter()
                            .map(|f| f.name().clone()),
                    );
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        out
    }

    /// Writes `batches` as the Parquet files of `location` (a new version of a resource).
    pub async fn write(
        &self,
        location: &str,
        batches: Vec<RecordBatch>,
    ) -> Result<(), SandboxError> {
        let ctx = self.session()?.local;
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

    /// A staging object that receives an uploaded file as it arrives.
    pub fn spool(&self) -> crate::load_parquet::Spool {
        crate::load_parquet::Spool::new(self.store.clone())
    }

    /// Loads the Parquet file `spooled` as the part `location` of a load, checked against
    /// `fields`; nothing is visible unless every row fits.
    pub async fn load_parquet(
        &self,
        spooled: &crate::load_parquet::Spooled,
        location: &str,
        fields: &[crate::load::Field],
    ) -> Result<crate::load::Loaded, SandboxError> {
        crate::load_parquet::load_parquet(self.store.clone(), spooled, location, fields).await
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
            let name = match t.name.split_once('.') {
                Some((WORKSPACE, name)) => TableReference::partial(WORKSPACE, name),
                _ => TableReference::bare(t.name.as_str()),
            };
            ctx.register_table(name, df.select(columns)?.into_view())?;
        }
        Ok(())
    }

    /// Runs `sql` over `tables` and answers; a statement that derives a table is refused here
    /// (see [`Sandbox::run`]).
    pub async fn query(
        &self,
        tables: &[Table],
        sql: &str,
        rules: Rules,
        secret: &str,
    ) -> Result<Answer, SandboxError> {
        match self.run(tables, sql, rules, secret, None).await? {
            Outcome::Answer(answer) => Ok(answer),
            Outcome::Derived(_) => Err(SandboxError::Engine("a derivation ran as a query".into())),
        }
    }

    /// Runs the statement `sql` over `tables`. A query answers with only what passes disclosure
    /// control: groups of at least `rules.k` records, their aggregates noised for
    /// `rules.epsilon`. `CREATE TABLE workspace.<name> AS SELECT …` writes the table under
    /// `workspace` (the grant's workspace location; without one it is refused) instead. `secret`
    /// is the grant's: it keys the masks and seeds the noise, and never leaves.
    pub async fn run(
        &self,
        tables: &[Table],
        sql: &str,
        rules: Rules,
        secret: &str,
        workspace: Option<&str>,
    ) -> Result<Outcome, SandboxError> {
        if !(rules.epsilon.is_finite() && rules.epsilon > 0.0) {
            return Err(SandboxError::Invalid(format!(
                "ε must be a positive number, not {}",
                rules.epsilon
            )));
        }
        let Sessions { reading, local } = self.session()?;
        self.register(&reading, tables, secret).await?;
        let plan = reading.state().create_logical_plan(sql).await?;
        if let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = &plan {
            let Some(root) = workspace else {
                return Err(Refusal::NotAQuery(plan.display().to_string()).into());
            };
            return self
                .derive(&local, tables, &plan, &create.name, &create.input, root)
                .await
                .map(Outcome::Derived);
        }
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
        let fields_touched = touched(&self.reads(&local, &plan, tables));
        // The data is read once, into the groups (on the engine); what is released, suppressed
        // and bounded is computed here over those rows.
        let run = async {
            let groups = self.hold(&reading, controlled.groups.clone()).await?;
            let held = in_place_of(&controlled.groups, groups)?;
            let swap = |plan: LogicalPlan| {
                plan.transform_up(|node| {
                    Ok(if node == controlled.groups {
                        Transformed::yes(held.clone())
                    } else {
                        Transformed::no(node)
                    })
                })
                .and_then(|t| {
                    // Never a second pass over the data by mistake.
                    if t.transformed {
                        Ok(t.data)
                    } else {
                        Err(DataFusionError::Internal(
                            "the groups are not in the plan".into(),
                        ))
                    }
                })
            };
            let released = local
                .execute_logical_plan(swap(controlled.released)?)
                .await?;
            let released = released.collect().await?;
            let counted = local
                .execute_logical_plan(swap(controlled.suppressed)?)
                .await?;
            let counted = counted.collect().await?;
            let bounds = match controlled.bounds {
                Some(plan) => {
                    local
                        .execute_logical_plan(swap(plan)?)
                        .await?
                        .collect()
                        .await?
                }
                None => Vec::new(),
            };
            Ok::<_, DataFusionError>((released, counted, bounds))
        };
        let (exact, counted, bounds) = tokio::time::timeout(self.limits.time, run)
            .await
            .map_err(|_| SandboxError::TimedOut(self.limits.time))?
            .map_err(|e| self.ran(e))?;
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
        Ok(Outcome::Answer(Answer {
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
        }))
    }

    /// The groups `plan` computes, held here for what is released from them: within the query's
    /// memory limit like the engine's own work (a query grouping by a near-unique key makes
    /// nearly as many groups as records), so that the pod is never asked to hold more.
    async fn hold(
        &self,
        reading: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>, DataFusionError> {
        use futures::StreamExt;
        let mut stream = reading
            .execute_logical_plan(plan)
            .await?
            .execute_stream()
            .await?;
        let (mut groups, mut bytes) = (Vec::new(), 0_usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.memory_bytes {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "its groups take more than the {} MiB a query may use",
                    self.limits.memory_bytes >> 20
                )));
            }
            groups.push(batch);
        }
        Ok(groups)
    }

    /// Writes what `input` selects as the workspace table `name`, under `root`.
    async fn derive(
        &self,
        ctx: &SessionContext,
        tables: &[Table],
        plan: &LogicalPlan,
        name: &TableReference,
        input: &LogicalPlan,
        root: &str,
    ) -> Result<Derived, SandboxError> {
        let table = match (name.schema(), name.table()) {
            (Some(WORKSPACE), table) if name.catalog().is_none() => table.to_string(),
            _ => {
                return Err(SandboxError::Invalid(format!(
                    "`{name}`: a derived table lives in the workspace: CREATE TABLE \
                     workspace.<name> AS SELECT …"
                )));
            }
        };
        // Checked before anything is written: the name becomes a path in the store.
        if !is_table_name(&table) {
            return Err(SandboxError::Invalid(format!(
                "workspace.`{table}`: a table's name is {TABLE_NAME_RULE}"
            )));
        }
        let plan_hash = format!("{:x}", Sha256::digest(plan.display_indent().to_string()));
        let reads = self.reads(ctx, input, tables);
        let fields_touched = touched(&reads);
        let inputs: Vec<String> = reads.keys().cloned().collect();
        let personal = tables.iter().any(|t| {
            reads
                .get(&t.name)
                .is_some_and(|read| t.personal.iter().any(|p| read.contains(p)))
        });
        let columns = input
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect();
        let location = format!(
            "{}/{table}/{:032x}/",
            root.trim_end_matches('/'),
            rand::random::<u128>()
        );
        let path = self.path(&location);
        let write = async {
            let df = ctx.execute_logical_plan(input.clone()).await?;
            let written = df
                .write_parquet(&path, DataFrameWriteOptions::new(), None)
                .await?;
            Ok::<_, DataFusionError>(written)
        };
        let written = tokio::time::timeout(self.limits.time, write)
            .await
            .map_err(|_| SandboxError::TimedOut(self.limits.time))
            .and_then(|r| r.map_err(|e| self.ran(e)));
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                // Nothing of a failed derivation stays behind.
                let _ = self.delete_all(&location).await;
                return Err(e);
            }
        };
        let rows = written
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        Ok(Derived {
            name: table,
            location,
            columns,
            inputs,
            personal,
            rows,
            plan_hash,
            fields_touched,
        })
    }

    /// Removes every object under `location` (a table's directory).
    pub async fn delete_all(&self, location: &str) -> Result<(), SandboxError> {
        for object in self.objects(location).await? {
            self.delete(object.location.as_ref()).await?;
        }
        Ok(())
    }
}

/// One stored object: where it lies, its size and its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub location: String,
    pub size: u64,
    pub sha256: String,
}

/// A plan that reads `rows`, the result of `plan`, with `plan`'s schema (its qualifiers too),
/// so that it can stand in its place.
fn in_place_of(plan: &LogicalPlan, rows: Vec<RecordBatch>) -> Result<LogicalPlan, DataFusionError> {
    const HELD: &str = "__pdp_groups";
    let schema = rows
        .first()
        .map_or_else(|| plan.schema().inner().clone(), RecordBatch::schema);
    let table = MemTable::try_new(schema, vec![rows])?;
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            Expr::Column(Column::new(Some(HELD), field.name()))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    LogicalPlanBuilder::scan(HELD, provider_as_source(Arc::new(table)), None)?
        .project(columns)?
        .build()
}

impl Sandbox {
    /// An error met while the plan ran over the data: resources and an engine out of reach said
    /// as such, anything else without the engine's message (it can quote a value).
    fn ran(&self, e: DataFusionError) -> SandboxError {
        if let Some(why) = self.engine.unreachable(&e) {
            return SandboxError::Unreachable(why);
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => SandboxError::TooLarge(m.clone()),
            _ => SandboxError::Failed,
        }
    }
}

/// The fields of `tables` a plan reads: table name → column names.
type Reads = BTreeMap<String, BTreeSet<String>>;

/// `table.field` of every column read.
fn touched(reads: &Reads) -> Vec<String> {
    reads
        .iter()
        .flat_map(|(table, fields)| fields.iter().map(move |f| format!("{table}.{f}")))
        .collect()
}

/// One value of an answer as text, as the API returns it.
pub fn display(column: &datafusion::arrow::array::ArrayRef, row: usize) -> String {
    datafusion::arrow::util::display::array_value_to_string(column, row).unwrap_or_default()
}
